package consul

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/route"
)

// maxAnswerBytes bounds one answer of the agent read by a ChainWatcher.
const maxAnswerBytes = 16 << 20

// chainAnswer is an answer of /v1/discovery-chain/<service>, with what the api types leave
// out: the request timeout of a resolver (Consul 1.14's compiled chain carries it).
type chainAnswer struct {
	chain        *api.CompiledDiscoveryChain
	startTimeout time.Duration // the start node's resolver RequestTimeout; 0 when none
}

// decodeChainAnswer reads an answer of the discovery chain endpoint.
func decodeChainAnswer(raw []byte) (chainAnswer, error) {
	var resp api.DiscoveryChainResponse
	if err := json.Unmarshal(raw, &resp); err != nil {
		return chainAnswer{}, fmt.Errorf("malformed answer: %w", err)
	}
	var extra struct {
		Chain *struct {
			StartNode string
			Nodes     map[string]*struct {
				Resolver *struct{ RequestTimeout json.RawMessage }
			}
		}
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return chainAnswer{}, fmt.Errorf("malformed answer: %w", err)
	}
	ans := chainAnswer{chain: resp.Chain}
	if extra.Chain == nil {
		return ans, nil
	}
	if n := extra.Chain.Nodes[extra.Chain.StartNode]; n != nil && n.Resolver != nil && len(n.Resolver.RequestTimeout) > 0 {
		d, err := jsonDuration(n.Resolver.RequestTimeout)
		if err != nil {
			return chainAnswer{}, fmt.Errorf("node %q resolver requestTimeout: %w", extra.Chain.StartNode, err)
		}
		ans.startTimeout = d
	}
	return ans, nil
}

// jsonDuration reads a duration written as nanoseconds or as a string such as "1.5s".
func jsonDuration(b json.RawMessage) (time.Duration, error) {
	var d time.Duration
	var s string
	if json.Unmarshal(b, &s) == nil {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, err
		}
	} else {
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("not a duration: %.40s", b)
		}
		d = time.Duration(n)
	}
	if d < 0 {
		return 0, errors.New("negative")
	}
	return d, nil
}

// compile compiles the chain; a resolver at its start lends its request timeout to the route,
// as Consul's own proxies do.
func (a chainAnswer) compile(down HealthFunc) (*ChainRules, error) {
	rules, err := CompileChain(a.chain, down)
	if err != nil {
		return nil, err
	}
	if a.startTimeout > 0 && len(rules.Routes) == 1 && rules.Routes[0].Timeout == 0 {
		if n := a.chain.Nodes[a.chain.StartNode]; n != nil && n.Type == api.DiscoveryGraphNodeTypeResolver {
			rules.Routes[0].Timeout = route.Duration(a.startTimeout)
		}
	}
	return rules, nil
}

// limitBody caps the body of every answer it carries at max bytes: a longer one fails to
// read instead of filling memory.
type limitBody struct {
	next http.RoundTripper
	max  int64
}

func (l limitBody) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.next.RoundTrip(req)
	if err == nil && resp.Body != nil {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: l.max, max: l.max}
	}
	return resp, err
}

type cappedBody struct {
	io.ReadCloser
	left, max int64
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("consul: answer longer than %d bytes", c.max)
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	return n, err
}

// CompileChainAnswer compiles an answer of /v1/discovery-chain/<service> as the agent wrote
// it (JSON), like [CompileChain], and also applies what the api types leave out: the request
// timeout of a resolver the chain starts at becomes the route's timeout, as Consul's own
// proxies apply it. A malformed answer is a *ChainError.
func CompileChainAnswer(raw []byte, down HealthFunc) (*ChainRules, error) {
	a, err := decodeChainAnswer(raw)
	if err != nil {
		return nil, &ChainError{Err: err}
	}
	return a.compile(down)
}
