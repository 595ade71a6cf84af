package consul

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/proxyless/proxyless/route"
)

// maxFilterLen bounds a service-resolver subset filter read from Consul.
const maxFilterLen = 4096

// ErrUnsupportedFilter is matched (errors.Is) by the error of a subset filter that
// [ParseSubsetFilter] cannot translate.
var ErrUnsupportedFilter = errors.New("consul: unsupported subset filter")

// ParseSubsetFilter translates a service-resolver subset filter (a Consul filter expression
// over the service's instances) into a [route.Subset]. It understands the common forms,
// joined by "and":
//
//	Service.Meta.version == v1         (the value quoted or bare; also "Service.Meta.version" == ...)
//	"canary" in Service.Tags           (also Service.Tags contains "canary")
//
// Anything else (or, not, !=, matches, Node.*, parentheses) is refused with an error that
// matches ErrUnsupportedFilter and quotes the expression, rather than guessed at. The empty
// filter selects every instance. The subset's tags are sorted, each once.
func ParseSubsetFilter(filter string) (route.Subset, error) {
	var s route.Subset
	if len(filter) > maxFilterLen {
		return s, fmt.Errorf("%w: longer than %d bytes", ErrUnsupportedFilter, maxFilterLen)
	}
	toks, err := filterTokens(filter)
	if err != nil {
		return s, fmt.Errorf("%w %q: %v", ErrUnsupportedFilter, truncateFilter(filter), err)
	}
	for len(toks) > 0 {
		if len(toks) < 3 {
			return route.Subset{}, unsupported(filter, "want <selector> == <value> or <value> in Service.Tags")
		}
		if err := addClause(&s, toks[0], toks[1], toks[2]); err != nil {
			return route.Subset{}, unsupported(filter, err.Error())
		}
		toks = toks[3:]
		if len(toks) > 0 {
			if !strings.EqualFold(toks[0].text, "and") || toks[0].quoted {
				return route.Subset{}, unsupported(filter, fmt.Sprintf("only \"and\" joins clauses, got %q", toks[0].text))
			}
			toks = toks[1:]
			if len(toks) == 0 {
				return route.Subset{}, unsupported(filter, "nothing after \"and\"")
			}
		}
	}
	slices.Sort(s.Tags)
	s.Tags = slices.Compact(s.Tags)
	return s, nil
}

func unsupported(filter, why string) error {
	return fmt.Errorf("%w %q: %s", ErrUnsupportedFilter, truncateFilter(filter), why)
}

func truncateFilter(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

// addClause adds one "a op b" clause to s.
func addClause(s *route.Subset, a, op, b filterToken) error {
	if op.quoted {
		return fmt.Errorf("want an operator, got %q", op.text)
	}
	switch op.text {
	case "==":
		if a.quoted && !b.quoted { // "Service.Meta.k" == v is not a selector; v == Service.Meta.k is
			a, b = b, a
		}
		key, ok := strings.CutPrefix(a.text, "Service.Meta.")
		if a.quoted || !ok || key == "" {
			return fmt.Errorf("only Service.Meta.<key> can be compared with ==, got %q", a.text)
		}
		if s.Meta == nil {
			s.Meta = map[string]string{}
		}
		if old, dup := s.Meta[key]; dup && old != b.text {
			return fmt.Errorf("Service.Meta.%s compared with both %q and %q", key, old, b.text)
		}
		s.Meta[key] = b.text
	case "in":
		if b.quoted || b.text != "Service.Tags" {
			return fmt.Errorf("only \"<tag>\" in Service.Tags is supported, got in %q", b.text)
		}
		s.Tags = append(s.Tags, a.text)
	case "contains":
		if a.quoted || a.text != "Service.Tags" {
			return fmt.Errorf("only Service.Tags contains \"<tag>\" is supported, got %q contains", a.text)
		}
		s.Tags = append(s.Tags, b.text)
	default:
		return fmt.Errorf("operator %q is not supported (only ==, in, contains, joined by and)", op.text)
	}
	return nil
}

// filterToken is a word, an operator or a quoted string of a filter expression.
type filterToken struct {
	text   string
	quoted bool
}

// filterTokens splits a filter into tokens: double-quoted or backquoted strings, "==" and
// other operator runs, and bare words (selectors, values, keywords).
func filterTokens(f string) ([]filterToken, error) {
	var toks []filterToken
	for i := 0; i < len(f); {
		c := f[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '`':
			end := strings.IndexByte(f[i+1:], c)
			if c == '"' {
				end = closingQuote(f[i+1:])
			}
			if end < 0 {
				return nil, errors.New("unterminated string")
			}
			raw := f[i : i+end+2]
			text := raw[1 : len(raw)-1]
			if c == '"' {
				u, err := strconv.Unquote(raw)
				if err != nil {
					return nil, fmt.Errorf("bad string %s", raw)
				}
				text = u
			}
			toks = append(toks, filterToken{text: text, quoted: true})
			i += end + 2
		case strings.IndexByte("=!<>()[]~", c) >= 0:
			j := i
			for j < len(f) && strings.IndexByte("=!<>()[]~", f[j]) >= 0 {
				j++
			}
			toks = append(toks, filterToken{text: f[i:j]})
			i = j
		default:
			j := i
			for j < len(f) && strings.IndexByte(" \t\n\r\"`=!<>()[]~", f[j]) < 0 {
				j++
			}
			toks = append(toks, filterToken{text: f[i:j]})
			i = j
		}
	}
	return toks, nil
}

// closingQuote returns the index in s of the double quote that ends a string whose opening
// quote came just before s, skipping escaped characters; -1 when there is none.
func closingQuote(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
