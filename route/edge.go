package route

import (
	"fmt"
	"net/http"
	"net/textproto"
)

// Edge is what a server does to the requests a route matches before its handler sees them:
// a request body limit and header transforms. It is carried out by middleware.NewHandler with
// WithEdgeRoutes (the edge gateway's handler stages), not by the client transport: the
// route's own RequestHeaders and ResponseHeaders are the client's, applied to the request the
// transport sends and the response it receives.
type Edge struct {
	// MaxBodyBytes caps the request body of matched requests, in bytes: a larger one is
	// answered 413 Content Too Large. Default 0: the server's own limit (WithMaxRequestBody),
	// none when it has none. It must not be negative.
	MaxBodyBytes int64 `json:"maxBodyBytes,omitempty" yaml:"maxBodyBytes,omitempty"`
	// RequestHeaders changes the headers of matched requests before the handler sees them
	// (Remove, then Set, then Add). Default: unchanged.
	RequestHeaders HeaderRewrite `json:"requestHeaders,omitempty" yaml:"requestHeaders,omitempty"`
	// ResponseHeaders changes the headers of the handler's response when it writes its status
	// (Remove, then Set, then Add). Default: unchanged.
	ResponseHeaders HeaderRewrite `json:"responseHeaders,omitempty" yaml:"responseHeaders,omitempty"`
}

// EdgePolicy is a route's compiled [Edge]. It is immutable and safe for concurrent use.
type EdgePolicy struct {
	maxBody   int64
	req, resp *headerOps
}

// Edge returns the route's edge policy, or nil when the route has none.
func (r *Route) Edge() *EdgePolicy { return r.edge }

// MaxBodyBytes returns the route's request body limit, or 0 when the route sets none.
func (p *EdgePolicy) MaxBodyBytes() int64 { return p.maxBody }

// RewritesRequest reports whether RewriteRequest changes anything.
func (p *EdgePolicy) RewritesRequest() bool { return p.req != nil }

// RewritesResponse reports whether RewriteResponse changes anything.
func (p *EdgePolicy) RewritesResponse() bool { return p.resp != nil }

// RewriteRequest applies the request header changes to h, in place.
func (p *EdgePolicy) RewriteRequest(h http.Header) { p.req.apply(h) }

// RewriteResponse applies the response header changes to h, in place.
func (p *EdgePolicy) RewriteResponse(h http.Header) { p.resp.apply(h) }

// framingHeaders are the headers an edge transform may not touch: they frame the message or
// the connection, and net/http (or the proxy) owns them.
var framingHeaders = map[string]bool{
	"Connection": true, "Content-Length": true, "Host": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// edge compiles e (at path) into r.
func (c *compiler) edge(e *Edge, path string, r *Route) bool {
	if e.MaxBodyBytes < 0 {
		return c.fail(path+".maxBodyBytes", "must not be negative, got %d", e.MaxBodyBytes)
	}
	p := &EdgePolicy{maxBody: e.MaxBodyBytes}
	var ok bool
	for _, hr := range []struct {
		rw   HeaderRewrite
		dst  **headerOps
		name string
	}{{e.RequestHeaders, &p.req, ".requestHeaders"}, {e.ResponseHeaders, &p.resp, ".responseHeaders"}} {
		if !c.framingFree(hr.rw, path+hr.name) {
			return false
		}
		if *hr.dst, ok = c.headerRewrite(hr.rw, path+hr.name); !ok {
			return false
		}
	}
	if p.maxBody > 0 || p.req != nil || p.resp != nil {
		r.edge = p
	}
	return true
}

// framingFree refuses a rewrite that touches one of the framingHeaders.
func (c *compiler) framingFree(hr HeaderRewrite, path string) bool {
	for i, name := range hr.Remove {
		if framingHeaders[textproto.CanonicalMIMEHeaderKey(name)] {
			return c.fail(fmt.Sprintf("%s.remove[%d]", path, i), "%q frames the message and cannot be rewritten", truncate(name, 64))
		}
	}
	for _, m := range []struct {
		kv   map[string]string
		name string
	}{{hr.Set, ".set"}, {hr.Add, ".add"}} {
		for _, k := range sortedKeys(m.kv) {
			if framingHeaders[textproto.CanonicalMIMEHeaderKey(k)] {
				return c.fail(path+m.name+"."+k, "%q frames the message and cannot be rewritten", truncate(k, 64))
			}
		}
	}
	return true
}
