package schemas

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// order ranks instance locations by the order in which the schema declares
// their properties, so that the "first" violation of a document is the one
// a reader of the schema meets first (a missing "id" before a bad
// "created_at"), independently of map iteration order.
type order struct {
	props map[string]int    // property name -> declaration index
	sub   map[string]*order // property name -> its schema's order
	items *order            // schema of array items
}

// rank is the sort key of the value at tokens: the declaration index of
// each property on the way (unknown properties after all declared ones,
// array elements by index).
func (o *order) rank(tokens []string) []int {
	r := make([]int, 0, len(tokens))
	for _, t := range tokens {
		switch {
		case o == nil:
			r = append(r, 1<<30)
		case o.items != nil:
			i, err := strconv.Atoi(t)
			if err != nil {
				i = 1 << 30
			}
			r = append(r, i)
			o = o.items
			continue
		default:
			i, ok := o.props[t]
			if !ok {
				i = len(o.props)
			}
			r = append(r, i)
			o = o.sub[t]
			continue
		}
	}
	return r
}

// schemaOrder reads the key order of "properties" (recursively, through
// "items") from a schema document; encoding/json's maps do not keep it.
func schemaOrder(raw []byte) (*order, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	n, err := readNode(d)
	if err != nil {
		return nil, err
	}
	return n.order(), nil
}

// node is a JSON value that keeps object key order.
type node struct {
	keys []string
	vals []*node
	obj  bool
}

func (n *node) get(k string) *node {
	for i, key := range n.keys {
		if key == k {
			return n.vals[i]
		}
	}
	return nil
}

func (n *node) order() *order {
	if n == nil || !n.obj {
		return nil
	}
	o := &order{}
	if p := n.get("properties"); p != nil && p.obj {
		o.props = make(map[string]int, len(p.keys))
		o.sub = make(map[string]*order, len(p.keys))
		for i, k := range p.keys {
			o.props[k] = i
			o.sub[k] = p.vals[i].order()
		}
	}
	if it := n.get("items"); it != nil {
		o.items = it.order()
		if o.items == nil {
			o.items = &order{}
		}
	}
	return o
}

func readNode(d *json.Decoder) (*node, error) {
	tok, err := d.Token()
	if err != nil {
		return nil, err
	}
	delim, ok := tok.(json.Delim)
	if !ok {
		return &node{}, nil
	}
	n := &node{obj: delim == '{'}
	for d.More() {
		if n.obj {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k, ok := kt.(string)
			if !ok {
				return nil, fmt.Errorf("object key %v is not a string", kt)
			}
			n.keys = append(n.keys, k)
		}
		v, err := readNode(d)
		if err != nil {
			return nil, err
		}
		if n.obj {
			n.vals = append(n.vals, v)
		}
	}
	if _, err := d.Token(); err != nil { // closing delimiter
		return nil, err
	}
	return n, nil
}
