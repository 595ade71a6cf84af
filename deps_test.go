package proxyless

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// corePackages may be imported alone: none of them may build an adapter's dependency.
var corePackages = []string{
	"./breaker",
	"./balancer",
	"./ratelimit",
	"./ratelimit/overload",
	"./route",
	"./discovery",
	"./outcome",
	"./tracing",
}

// adapterModules are the modules only adapter packages (grpcbalancer, ratelimit/redis,
// route/reload, discovery/consul, middleware) may bring in.
var adapterModules = []string{
	"google.golang.org/grpc",
	"github.com/redis/go-redis",
	"github.com/hashicorp/consul/api",
	"github.com/fsnotify/fsnotify",
}

// goCommand returns the go command: the one on PATH, else $GOROOT/bin/go.
func goCommand(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	t.Fatal("no go command on PATH or in $GOROOT/bin")
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// adapterModule returns the adapter module that contains the package path, or "".
func adapterModule(path string) string {
	for _, m := range adapterModules {
		if path == m || strings.HasPrefix(path, m+"/") {
			return m
		}
	}
	return ""
}

func TestCorePackagesCarryNoAdapterDependencies(t *testing.T) {
	goBin := goCommand(t)
	for _, pkg := range corePackages {
		t.Run(strings.TrimPrefix(pkg, "./"), func(t *testing.T) {
			// One line per package the build of pkg needs: the package, then its imports.
			cmd := exec.Command(goBin, "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, pkg)
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
			}
			imports := map[string][]string{}
			var root string
			for line := range strings.Lines(string(out)) {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				imports[f[0]] = f[1:]
				root = f[0] // go list -deps prints the named package last
			}
			if len(imports) < 2 {
				t.Fatalf("go list -deps %s listed %d packages; want the package and its dependencies", pkg, len(imports))
			}
			var reached []string
			for p := range imports {
				if m := adapterModule(p); m != "" && !slices.Contains(reached, m) {
					reached = append(reached, m)
				}
			}
			slices.Sort(reached)
			chains := adapterChains(root, imports)
			for _, m := range reached {
				how := "through an import chain not found from " + root
				for _, c := range chains {
					if adapterModule(c[len(c)-1]) == m {
						how = strings.Join(c, " -> ")
					}
				}
				t.Errorf("%s builds %s: %s", pkg, m, how)
			}
		})
	}
}

// adapterChains returns, for each adapter module that root's build reaches, one shortest
// chain of imports from root to a package of that module.
func adapterChains(root string, imports map[string][]string) [][]string {
	parent := map[string]string{root: ""}
	queue := []string{root}
	found := map[string][]string{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if m := adapterModule(p); m != "" {
			if _, ok := found[m]; !ok {
				var chain []string
				for q := p; q != ""; q = parent[q] {
					chain = append(chain, q)
				}
				slices.Reverse(chain)
				found[m] = chain
			}
			continue
		}
		for _, q := range imports[p] {
			if _, seen := parent[q]; !seen {
				parent[q] = p
				queue = append(queue, q)
			}
		}
	}
	var chains [][]string
	for _, m := range adapterModules {
		if c, ok := found[m]; ok {
			chains = append(chains, c)
		}
	}
	return chains
}
