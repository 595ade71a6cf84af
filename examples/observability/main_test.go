package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs, bounded, and shows what it claims: the span tree of a retried request,
// with a first attempt answered 503 and a retry answered 200 under the request span, and a
// scrape whose attempt counter adds up to the attempts the backends saw.
func TestExampleSmoke(t *testing.T) {
	cfg := config{requests: 40, duration: 10 * time.Second, backends: 3, fail: 1}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	err := run(ctx, &buf, cfg)
	out := buf.String()
	t.Log("\n" + out)
	require.NoError(t, err)

	// The traffic summary, and what the backends saw.
	m := regexp.MustCompile(`traffic: (\d+) requests in \S+: (\d+) answered 200, (\d+) failed; attempts: (\d+), retries: (\d+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no traffic summary")
	requests, ok, attempts, retries := atoi(t, m[1]), atoi(t, m[2]), atoi(t, m[4]), atoi(t, m[5])
	assert.Equal(t, cfg.requests, requests)
	assert.Equal(t, cfg.requests, ok, "every request answered 200 in the end")
	assert.GreaterOrEqual(t, retries, 1)
	assert.Equal(t, requests+retries, attempts)
	saw := regexp.MustCompile(`backend-\d+ (\d+)`).FindAllStringSubmatch(section(out, "backends saw:"), -1)
	require.Len(t, saw, cfg.backends)
	var hits int
	for _, s := range saw {
		hits += atoi(t, s[1])
	}
	assert.Equal(t, attempts, hits, "the attempts the client counted are those the backends saw")

	// The span tree: a request span with at least two attempt spans below it, the first
	// answered 503 and discarded, then a retry that won; each attempt reached a backend.
	tree := parseTree(section(out, "span tree of a retried request"))
	require.NotEmpty(t, tree, "no span tree")
	root := tree[0]
	assert.Equal(t, 0, root.depth)
	assert.Contains(t, root.header, "GET shop [internal]")
	assert.Contains(t, root.details, "proxyless.destination=shop")
	assert.Contains(t, root.details, "proxyless.outcome=success")
	assert.Contains(t, root.details, "event proxyless.retry ")
	var clients []span
	for _, s := range tree[1:] {
		if s.depth == 1 {
			assert.Contains(t, s.header, "[client]", "a child of the request span is not an attempt")
			clients = append(clients, s)
		}
	}
	require.GreaterOrEqual(t, len(clients), 2, "the request span has fewer than two attempts below it")
	assert.Contains(t, root.details, "proxyless.attempts="+strconv.Itoa(len(clients)))
	first, last := clients[0], clients[len(clients)-1]
	for _, want := range []string{"proxyless.attempt.kind=first", "proxyless.outcome=gateway_failure",
		"http.response.status_code=503", "proxyless.attempt.discarded=true", "server.address=127.0.0.1", "server.port="} {
		assert.Contains(t, first.details, want)
	}
	assert.Contains(t, first.header, "status=Error")
	for _, want := range []string{"proxyless.attempt=1", "proxyless.attempt.kind=retry", "http.response.status_code=200",
		"proxyless.attempt.winner=true", "proxyless.retry.backoff="} {
		assert.Contains(t, last.details, want)
	}
	var servers int
	for _, s := range tree {
		if s.depth == 2 && strings.Contains(s.header, "[server]") {
			servers++
		}
	}
	assert.Equal(t, len(clients), servers, "each attempt has the backend's span below it")

	// The scrape: the attempt counter, as Prometheus names it, adds up to what was sent.
	scraped := section(out, "one scrape of http://127.0.0.1:")
	assert.Contains(t, scraped, "# TYPE proxyless_client_attempts_total counter")
	var total, first0, retried, failed int
	for _, line := range strings.Split(scraped, "\n") {
		if !strings.HasPrefix(line, "proxyless_client_attempts_total{") {
			continue
		}
		n := atoi(t, line[strings.LastIndexByte(line, ' ')+1:])
		total += n
		switch {
		case strings.Contains(line, `proxyless_attempt_kind="first"`):
			first0 += n
		case strings.Contains(line, `proxyless_attempt_kind="retry"`):
			retried += n
		}
		if strings.Contains(line, `proxyless_outcome="gateway_failure"`) {
			failed += n
		}
	}
	assert.Equal(t, attempts, total, "proxyless_client_attempts_total")
	assert.Equal(t, requests, first0, "first attempts")
	assert.Equal(t, retries, retried, "retry attempts")
	assert.Equal(t, retries, failed, "each 503 was retried")
	assert.Regexp(t, `(?m)^proxyless_client_retries_total\{proxyless_destination="shop"\} `+strconv.Itoa(retries)+`$`, scraped)
	assert.Regexp(t, `(?m)^proxyless_endpoints_known\{proxyless_destination="shop"\} 3$`, scraped)
	assert.Contains(t, scraped, "http_client_request_duration_seconds_count{")
	assert.NotContains(t, scraped, "_bucket{")
}

// With no failures there is nothing to show, and the example says so.
func TestExampleWithoutRetry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var buf bytes.Buffer
	require.NoError(t, run(ctx, &buf, config{requests: 5, duration: 10 * time.Second, backends: 2, fail: 0}))
	assert.Contains(t, buf.String(), "no request was retried")
	assert.Contains(t, buf.String(), "proxyless_client_attempts_total{")
}

func TestFlagsAreValidated(t *testing.T) {
	cfg, err := parseFlags(nil)
	require.NoError(t, err)
	assert.Equal(t, config{requests: 30, duration: 5 * time.Second, backends: 3, fail: 1}, cfg)
	for _, args := range [][]string{{"-requests", "0"}, {"-duration", "0s"}, {"-backends", "1"}, {"-fail", "-1"}, {"-nope"}, {"extra"}} {
		_, err := parseFlags(args)
		assert.Error(t, err, "%v", args)
	}
	assert.Error(t, run(context.Background(), &bytes.Buffer{}, config{}), "run validates its config")
}

// section returns the lines of out from the one starting with prefix to the next blank line.
func section(out, prefix string) string {
	i := strings.Index(out, prefix)
	if i < 0 {
		return ""
	}
	s, _, _ := strings.Cut(out[i:], "\n\n")
	return s
}

// span is one span of a printed tree: its header line, depth, and the lines below it.
type span struct {
	depth   int
	header  string
	details string
}

// parseTree parses the tree that printSpan prints, skipping the title line. A header at
// depth d > 0 starts with 4(d-1) runes of prefix and then "├── " or "└── "; the root's has
// no prefix; any other line belongs to the span above it.
func parseTree(s string) []span {
	lines := strings.Split(s, "\n")
	var spans []span
	for i, line := range lines[1:] {
		r := []rune(line)
		switch {
		case i == 0:
			spans = append(spans, span{header: line})
		case len(spans) == 0:
			return nil
		default:
			j := strings.IndexAny(line, "├└")
			if k := strings.IndexFunc(line, func(c rune) bool { return !strings.ContainsRune("│ ", c) }); j >= 0 && k == j {
				depth := len([]rune(line[:j]))/4 + 1
				spans = append(spans, span{depth: depth, header: string(r[depth*4:])})
				continue
			}
			spans[len(spans)-1].details += strings.TrimLeft(line, "│ ") + "\n"
		}
	}
	return spans
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	require.NoError(t, err, "%q", s)
	return n
}
