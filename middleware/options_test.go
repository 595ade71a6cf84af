package middleware_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// optionCase is an option given to a constructor that does not take it (bad), and to one
// that does (good).
type optionCase struct {
	bad, good string // Go statements
	want      string // what the compiler says of bad
}

var optionCases = []optionCase{
	{
		bad:  `_, _ = middleware.NewGRPCClient(r, middleware.WithJWT(nil))`,
		good: `_, _ = middleware.NewGRPCServer(middleware.WithJWT(nil))`,
		want: "middleware.ServerOption does not implement middleware.GRPCClientOption",
	},
	{
		bad:  `_, _ = middleware.NewGRPCClient(r, middleware.WithServerRateLimit(nil, nil))`,
		good: `_, _ = middleware.NewHandler(h, middleware.WithServerRateLimit(nil, nil))`,
		want: "middleware.ServerOption does not implement middleware.GRPCClientOption",
	},
	{
		bad:  `_, _ = middleware.NewTransport(nil, middleware.WithTLS(nil))`,
		good: `_, _ = middleware.NewGRPCClient(r, middleware.WithTLS(nil))`,
		want: "middleware.GRPCClientOption does not implement middleware.TransportOption",
	},
	{
		bad:  `_, _ = middleware.NewHandler(h, middleware.WithRateLimit(ratelimit.Quota{Rate: 1}))`,
		good: `_, _ = middleware.NewTransport(nil, middleware.WithRateLimit(ratelimit.Quota{Rate: 1}))`,
		want: "middleware.ClientOption does not implement middleware.HandlerOption",
	},
	{
		bad:  `_, _ = middleware.NewHandler(h, middleware.WithLogger(nil))`,
		good: `_, _ = middleware.NewGRPCClient(r, middleware.WithLogger(nil))`,
		want: "middleware.ClientOption does not implement middleware.HandlerOption",
	},
	{
		bad:  `_, _ = middleware.NewGRPCServer(middleware.WithRetry(middleware.RetryPolicy{}))`,
		good: `_, _ = middleware.NewGRPCClient(r, middleware.WithRetry(middleware.RetryPolicy{}))`,
		want: "middleware.ClientOption does not implement middleware.GRPCServerOption",
	},
	{
		bad:  `_, _ = middleware.NewHandler(h, middleware.WithGRPCStatsHandler(nil))`,
		good: `_, _ = middleware.NewGRPCServer(middleware.WithGRPCStatsHandler(nil))`,
		want: "middleware.GRPCOption does not implement middleware.HandlerOption",
	},
	{
		bad:  `_, _ = middleware.NewTransport(nil, middleware.WithServerFaults(nil))`,
		good: `_, _ = middleware.NewGRPCServer(middleware.WithServerFaults(nil))`,
		want: "middleware.ServerOption does not implement middleware.TransportOption",
	},
	{
		bad:  `_, _ = middleware.NewGRPCClient(r, middleware.WithShadowLimit(1))`,
		good: `_, _ = middleware.NewTransport(nil, middleware.WithShadowLimit(1))`,
		want: "middleware.TransportOption does not implement middleware.GRPCClientOption",
	},
}

// optionProgram returns a main package that runs each statement of stmts, one a line, and the
// line of the first.
func optionProgram(stmts []string) (string, int) {
	var b strings.Builder
	b.WriteString(`package main

import (
	"net/http"

	"github.com/proxyless/proxyless/discovery"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
)

var (
	r = discovery.MustNewStatic(nil)
	h = http.NotFoundHandler()
	_ = ratelimit.Quota{}
)

func main() {
`)
	first := strings.Count(b.String(), "\n") + 1
	for _, s := range stmts {
		b.WriteString("\t" + s + "\n")
	}
	b.WriteString("}\n")
	return b.String(), first
}

// buildOverlay builds a main package made of src alone, in a directory of the module that
// exists only in a go build -overlay, so that it resolves the module and leaves nothing on
// disk. It returns the compiler's output and whether the build succeeded.
func buildOverlay(t *testing.T, name, src string) (string, bool) {
	t.Helper()
	gobin, err := exec.LookPath("go")
	require.NoError(t, err, "the test builds programs with the go command")
	wd, err := os.Getwd()
	require.NoError(t, err)
	tmp := t.TempDir()
	file := filepath.Join(tmp, name+".go")
	require.NoError(t, os.WriteFile(file, []byte(src), 0o600))
	dir := filepath.Join(wd, "testdata", "optioncheck", name) // never created
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(dir, "main.go"): file}})
	require.NoError(t, err)
	ofile := filepath.Join(tmp, "overlay.json")
	require.NoError(t, os.WriteFile(ofile, overlay, 0o600))
	cmd := exec.Command(gobin, "build", "-overlay", ofile, "-o", os.DevNull, "./"+filepath.ToSlash(filepath.Join("testdata", "optioncheck", name)))
	cmd.Dir = wd
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

// An option given to a constructor that does not honour it does not compile, and the
// compiler names the option's type; the same options given to the constructors that take
// them compile.
func TestOptionTypesRefuseOtherConstructors(t *testing.T) {
	if testing.Short() {
		t.Skip("builds programs")
	}
	var bad, good []string
	for _, c := range optionCases {
		bad, good = append(bad, c.bad), append(good, c.good)
	}

	src, _ := optionProgram(good)
	out, ok := buildOverlay(t, "good", src)
	require.True(t, ok, "the positive control must build:\n%s", out)

	src, first := optionProgram(bad)
	out, ok = buildOverlay(t, "bad", src)
	require.False(t, ok, "a server option given to a client constructor (and the like) must not compile")
	for i, c := range optionCases {
		at := fmt.Sprintf("bad.go:%d:", first+i)
		var line string
		for l := range strings.SplitSeq(out, "\n") {
			if strings.Contains(l, at) {
				line = l
				break
			}
		}
		if assert.NotEmpty(t, line, "no error for %s in:\n%s", c.bad, out) {
			assert.Contains(t, line, c.want, c.bad)
		}
	}
}
