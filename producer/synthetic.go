package producer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
)

// Synthetic traffic domains.
const (
	DomainSupport = "support" // banking support queries (triage.support-queries)
	DomainReviews = "reviews" // movie reviews (triage.reviews)
	DomainMixed   = "mixed"   // both, half and half
)

// DomainFor picks the synthetic domain that fits topic: reviews for a
// topic whose name mentions "review", support queries otherwise.
func DomainFor(topic string) string {
	if strings.Contains(strings.ToLower(topic), "review") {
		return DomainReviews
	}
	return DomainSupport
}

// supportTemplates read like the banking support queries the support model
// is trained on; {slots} are filled from fills.
var supportTemplates = []string{
	"My card still hasn't arrived after {days} days, when will it come?",
	"I ordered a new card {days} days ago and it's not here yet.",
	"I was charged {amount} {currency} twice at {merchant}, can I get a refund?",
	"There's a payment of {amount} {currency} at {merchant} that I don't recognise.",
	"Why was my card declined at {merchant}? I have money in my account.",
	"How do I reset my PIN? I forgot it.",
	"My card is blocked after I entered the wrong PIN three times.",
	"My transfer of {amount} {currency} to {person} hasn't arrived yet.",
	"How long does a bank transfer from {country} usually take?",
	"Can I top up my account with {method}?",
	"My top-up of {amount} {currency} by {method} failed, why?",
	"What exchange rate do you use when I pay in {currency}?",
	"Is there a fee for withdrawing cash in {country}?",
	"The ATM in {city} kept my card and did not give me the cash.",
	"I got charged an extra fee of {amount} {currency} for a card payment.",
	"My virtual card doesn't work for online payments at {merchant}.",
	"The app says my identity verification failed, which documents do you need?",
	"I moved to {city}, how do I change my address?",
	"I want to close my account, how do I do that?",
	"I lost my card in {city} yesterday, please freeze it.",
	"Can I get a refund for {merchant}? They cancelled my order {days} days ago.",
	"Why is my balance {amount} {currency} lower than it should be?",
}

// reviewTemplates read like the movie reviews the reviews model is trained on.
var reviewTemplates = []string{
	"{movie} is a {good} film. {actor} is {good} and the ending {goodverb}.",
	"I {loved} {movie}: {minutes} minutes that flew by, with a {good} score.",
	"{movie} was {bad}. The plot is {bad} and {actor} looks bored throughout.",
	"What a waste of {minutes} minutes. {movie} {badverb} from start to finish.",
	"A {good}, heartfelt story; {actor} gives the performance of a career.",
	"I wanted to like {movie}, but the dialogue is {bad} and the pacing {badverb}.",
	"{actor} saves an otherwise {bad} script. Two stars at most.",
	"Easily the {superlative} film I've seen this year. Go see {movie}.",
	"The first hour of {movie} is {good}, then it {badverb}.",
	"Not since {year} has a {genre} been this {good}.",
	"A {bad} {genre} that {badverb}; even {actor} can't save it.",
	"{movie} is the kind of {genre} that {goodverb}. I would watch it again.",
}

var fills = map[string][]string{
	"days":        {"3", "5", "7", "10", "12", "14", "21"},
	"amount":      {"4.99", "12.50", "20", "35.10", "49.99", "120", "250", "1,000"},
	"currency":    {"EUR", "GBP", "USD", "CHF", "PLN", "JPY"},
	"merchant":    {"Amazon", "a petrol station", "Uber", "a hotel in Lisbon", "Spotify", "the supermarket", "Netflix"},
	"person":      {"my landlord", "my sister", "a friend", "my own account", "a supplier"},
	"country":     {"Germany", "the US", "Spain", "Japan", "Poland", "Mexico"},
	"city":        {"London", "Berlin", "Madrid", "Paris", "Warsaw", "Lisbon"},
	"method":      {"Apple Pay", "Google Pay", "a bank transfer", "cash", "cheque", "another card"},
	"movie":       {"The Last Harbor", "Midnight Circuit", "Paper Lanterns", "Echoes of Mars", "The Quiet Year", "Iron Orchard"},
	"actor":       {"the lead", "the supporting cast", "Ana Ruiz", "Tom Hale", "the young newcomer"},
	"good":        {"wonderful", "gripping", "beautiful", "brilliant", "moving", "funny"},
	"bad":         {"dull", "predictable", "clumsy", "boring", "messy", "lifeless"},
	"goodverb":    {"stays with you", "lands perfectly", "earns every tear", "works beautifully"},
	"badverb":     {"drags", "falls apart", "goes nowhere", "never recovers"},
	"loved":       {"loved", "adored", "really enjoyed"},
	"minutes":     {"95", "110", "124", "142", "160"},
	"superlative": {"best", "most surprising", "funniest", "most moving"},
	"year":        {"1999", "2004", "2012", "2017"},
	"genre":       {"thriller", "comedy", "drama", "sci-fi film", "romance", "western"},
}

// Synthetic is an endless Source of template texts with random fills. The
// same seed gives the same sequence.
type Synthetic struct {
	rng    *rand.Rand
	domain string
}

// SyntheticSource returns generated support queries, reviews or both
// (DomainSupport, DomainReviews, DomainMixed).
func SyntheticSource(domain string, seed uint64) (*Synthetic, error) {
	switch domain {
	case DomainSupport, DomainReviews, DomainMixed:
	default:
		return nil, fmt.Errorf("synthetic domain %q: use %s, %s or %s", domain, DomainSupport, DomainReviews, DomainMixed)
	}
	return &Synthetic{rng: rand.New(rand.NewPCG(seed, 0x7472696167657379)), domain: domain}, nil
}

// Next never returns io.EOF; the count limit or ctx ends a synthetic run.
func (s *Synthetic) Next(ctx context.Context) (Message, error) {
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	domain := s.domain
	if domain == DomainMixed {
		domain = DomainSupport
		if s.rng.IntN(2) == 1 {
			domain = DomainReviews
		}
	}
	templates := supportTemplates
	if domain == DomainReviews {
		templates = reviewTemplates
	}
	i := s.rng.IntN(len(templates))
	return Message{
		Text:     s.fill(templates[i]),
		Source:   "synthetic",
		Metadata: map[string]any{"domain": domain, "template": i},
	}, nil
}

// fill replaces each {slot} with a random value of that slot.
func (s *Synthetic) fill(t string) string {
	var b strings.Builder
	for {
		open := strings.IndexByte(t, '{')
		if open < 0 {
			b.WriteString(t)
			break
		}
		end := strings.IndexByte(t[open:], '}')
		if end < 0 {
			b.WriteString(t)
			break
		}
		b.WriteString(t[:open])
		slot := t[open+1 : open+end]
		vals := fills[slot]
		if len(vals) == 0 {
			panic("producer: template slot without fills: " + slot)
		}
		b.WriteString(vals[s.rng.IntN(len(vals))])
		t = t[open+end+1:]
	}
	out := b.String()
	return strings.ToUpper(out[:1]) + out[1:]
}
