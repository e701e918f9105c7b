package main

import (
	"flag"

	"github.com/triage-ml/triage/gateway"
)

// gatewayFlags are the gateway's flags (gateway.Config registers its own)
// plus --model, which names the models it serves in the composition.
type gatewayFlags struct {
	gateway.Config
	models dirMapFlag
}

func (g *gatewayFlags) register(fs *flag.FlagSet) {
	g.Config.RegisterFlags(fs)
	g.models.what, g.models.bare = "name", true
	fs.Var(&g.models, "model", "models the gateway serves: name (from the registry) or name=bundle-dir (a fixed bundle, never swapped); repeatable; default every model with a champion")
}
