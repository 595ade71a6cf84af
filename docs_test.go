package proxyless

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/auth"
	"github.com/proxyless/proxyless/balancer"
	"github.com/proxyless/proxyless/breaker"
	"github.com/proxyless/proxyless/middleware"
	"github.com/proxyless/proxyless/ratelimit"
	"github.com/proxyless/proxyless/route"
)

// docBlock is one fenced code block of a page under docs/.
type docBlock struct {
	file string // "docs/routing.md"
	line int    // the line of the opening fence, from 1
	info string // what follows the opening fence: "go", "yaml", "yaml balancer.Config"
	body string
}

func (b docBlock) String() string { return fmt.Sprintf("%s:%d (```%s)", b.file, b.line, b.info) }

// docBlocks returns the fenced blocks of every docs/*.md page, in order.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	pages, err := filepath.Glob("docs/*.md")
	if err != nil || len(pages) == 0 {
		t.Fatalf("no pages under docs/ (err %v)", err)
	}
	var blocks []docBlock
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := fencedBlocks(filepath.ToSlash(page), data)
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(blocks, bs...)
	}
	return blocks
}

// fencedBlocks splits a Markdown page into its ``` blocks (fences at the start of a line).
func fencedBlocks(file string, data []byte) ([]docBlock, error) {
	var out []docBlock
	var cur *docBlock
	var body strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "```") {
			if cur != nil {
				body.WriteString(line)
				body.WriteByte('\n')
			}
			continue
		}
		if cur == nil {
			cur = &docBlock{file: file, line: n, info: strings.TrimSpace(strings.TrimPrefix(line, "```"))}
			body.Reset()
			continue
		}
		cur.body = body.String()
		out = append(out, *cur)
		cur = nil
	}
	if cur != nil {
		return nil, fmt.Errorf("%s: unclosed code block", cur)
	}
	return out, sc.Err()
}

// TestDocsGoSnippetsCompile builds every ```go block of docs/*.md. Each must be a whole
// program (package main), gofmt-formatted: the blocks are written as packages of a scratch directory inside
// this module, so that they build against the code as it is, and built by one go build. A
// //line directive makes the compiler's errors point into the page.
func TestDocsGoSnippetsCompile(t *testing.T) {
	goBin := goCommand(t)
	dir, err := os.MkdirTemp(".", "_docsnippets")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var pkgs []string
	for _, b := range docBlocks(t) {
		if b.info != "go" {
			continue
		}
		if !strings.HasPrefix(strings.TrimSpace(b.body), "package main") {
			t.Errorf("%s: a go block must be a whole program starting with \"package main\"", b)
			continue
		}
		if formatted, err := format.Source([]byte(b.body)); err == nil && string(formatted) != b.body {
			t.Errorf("%s: not gofmt-formatted; gofmt would write:\n%s", b, formatted)
		}
		name := strings.TrimSuffix(filepath.Base(b.file), ".md")
		pkg := filepath.Join(dir, fmt.Sprintf("%s_%d", strings.ReplaceAll(name, "-", "_"), b.line))
		if err := os.Mkdir(pkg, 0o755); err != nil {
			t.Fatal(err)
		}
		src := fmt.Sprintf("//line %s:%d\n%s", b.file, b.line+1, b.body)
		if err := os.WriteFile(filepath.Join(pkg, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, "./"+filepath.ToSlash(pkg))
	}
	if len(pkgs) == 0 {
		t.Fatal("docs/*.md hold no go blocks")
	}
	cmd := exec.Command(goBin, append([]string{"build", "-o", os.DevNull}, pkgs...)...)
	if len(pkgs) > 1 {
		cmd = exec.Command(goBin, append([]string{"build"}, pkgs...)...) // several mains: built, not written
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the go blocks of docs/*.md do not build (%v):\n%s", err, out)
	}
	t.Logf("built %d go blocks", len(pkgs))
}

// docSchemas are the configuration types a ```yaml block may name after "yaml ", each checked
// strictly (unknown fields refused) and validated by its package's constructor.
var docSchemas = map[string]func(data []byte) error{
	"balancer.Config": func(data []byte) error {
		var c balancer.Config
		if err := strictYAML(data, &c); err != nil {
			return err
		}
		b, err := balancer.New(c)
		if err != nil {
			return err
		}
		return b.Close()
	},
	"ratelimit.KeyedConfig": func(data []byte) error {
		var c ratelimit.KeyedConfig
		if err := strictYAML(data, &c); err != nil {
			return err
		}
		_, err := ratelimit.NewKeyed(c)
		return err
	},
	"auth.ConsumersConfig": func(data []byte) error {
		cfg, err := auth.ParseConsumersConfig(data)
		if err != nil {
			return err
		}
		_, err = auth.NewConsumers(cfg)
		return err
	},
	"breaker.Config": func(data []byte) error {
		var c breaker.Config
		if err := strictYAML(data, &c); err != nil {
			return err
		}
		return c.Validate()
	},
	// A route document with its destinations: section, read and validated (routes and
	// destination policies) as middleware.Config.Load reads it.
	"middleware.Document": func(data []byte) error {
		_, err := middleware.ParseDocument(data)
		return err
	},
}

func strictYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// TestDocsConfigSnippetsParse checks every ```yaml and ```json block of docs/*.md: a plain
// one is a route document and must pass route.ParseConfig (strict: unknown fields refused,
// then validated as Compile would); one whose info names a type ("yaml balancer.Config",
// "yaml middleware.Document") must decode strictly into it and validate.
func TestDocsConfigSnippetsParse(t *testing.T) {
	n := 0
	for _, b := range docBlocks(t) {
		lang, schema, _ := strings.Cut(b.info, " ")
		if lang != "yaml" && lang != "json" {
			continue
		}
		n++
		var err error
		switch {
		case schema == "":
			_, err = route.ParseConfig([]byte(b.body))
		case lang == "yaml" && docSchemas[schema] != nil:
			err = docSchemas[schema]([]byte(b.body))
		default:
			err = errors.New("unknown schema " + schema)
		}
		if err != nil {
			t.Errorf("%s: %v", b, err)
		}
	}
	if n == 0 {
		t.Fatal("docs/*.md hold no yaml or json blocks")
	}
}

// TestDocsLinks checks the relative links of README.md and docs/*.md: each names a file or
// directory of the repository and, after '#', a heading of the Markdown page it names. Pages
// under docs/ link nowhere outside the repository.
func TestDocsLinks(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range append(pages, "README.md") {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(withoutCode(string(data)), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				if strings.HasPrefix(page, "docs") {
					t.Errorf("%s: link %q points outside the repository", page, target)
				}
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("%s: link %q: %v", page, target, err)
					continue
				}
			}
			if anchor != "" && strings.HasSuffix(path, ".md") && !hasHeading(t, path, anchor) {
				t.Errorf("%s: link %q: %s has no heading #%s", page, target, path, anchor)
			}
		}
	}
}

// withoutCode drops fenced code blocks, whose brackets are not links.
func withoutCode(s string) string {
	var b strings.Builder
	in := false
	for line := range strings.Lines(s) {
		if strings.HasPrefix(line, "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(line)
		}
	}
	return b.String()
}

// hasHeading reports whether the Markdown page has a heading whose GitHub anchor is anchor.
func hasHeading(t *testing.T, page, anchor string) bool {
	data, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(withoutCode(string(data))) {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var slug strings.Builder
		for _, r := range strings.ToLower(title) {
			switch {
			case r == ' ' || r == '-':
				slug.WriteRune('-')
			case r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				slug.WriteRune(r)
			}
		}
		if slug.String() == anchor {
			return true
		}
	}
	return false
}

// TestRoutingDocCoversEveryField fails when a field of the route document (route.Config and
// every type under it, by its YAML name) is not named in docs/routing.md, inside `code` and
// outside HTML comments.
func TestRoutingDocCoversEveryField(t *testing.T) {
	data, err := os.ReadFile("docs/routing.md")
	if err != nil {
		t.Fatal(err)
	}
	// Placeholders (HTML comments) do not count as documentation.
	text := regexp.MustCompile(`(?s)<!--.*?-->`).ReplaceAllString(withoutCode(string(data)), "")
	named := map[string]bool{}
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatch(text, -1) {
		for _, w := range strings.FieldsFunc(m[1], func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			named[w] = true
		}
	}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] || typ.PkgPath() != reflect.TypeFor[route.Config]().PkgPath() {
			return
		}
		seen[typ] = true
		for f := range typ.Fields() {
			if !f.IsExported() {
				continue
			}
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if strings.Contains(opts, "inline") {
				walk(f.Type, path)
				continue
			}
			if name == "" || name == "-" {
				continue
			}
			if !named[name] {
				t.Errorf("docs/routing.md does not name the field %s%s", path, name)
			}
			walk(f.Type, path+name+".")
		}
	}
	walk(reflect.TypeFor[route.Config](), "")
	if len(seen) < 10 {
		t.Fatalf("walked %d types of the route document; want its whole tree", len(seen))
	}
}

// TestDocSchemasRefuse shows that the typed checks of TestDocsConfigSnippetsParse can fail:
// each schema refuses a document with an unknown field or an invalid value.
func TestDocSchemasRefuse(t *testing.T) {
	bad := map[string][]string{
		"balancer.Config":       {"policy: maglev\nhashPolicy: [{header: x-user}]\nringSize: 3\n", "policy: round_robin\nhashPolicy: [{header: x-user}]\n"},
		"breaker.Config":        {"minimumVolume: 20\nopenDelay: 5\n"},
		"ratelimit.KeyedConfig": {"default: {rate: 10}\nmaxkeys: 10\n"},
		"middleware.Document": {
			"routes: []\ndestinations:\n  payments:\n    retries: 3\n",
			"routes: []\ndestinations:\n  payments:\n    limits: {burst: 5}\n",
			"routes: []\ndestinations:\n  payments:\n    balancer: {policy: least_request, hashPolicy: [{header: x-user}]}\n",
		},
	}
	for schema, docs := range bad {
		check := docSchemas[schema]
		if check == nil {
			t.Fatalf("no schema %s", schema)
		}
		for _, doc := range docs {
			if err := check([]byte(doc)); err == nil {
				t.Errorf("%s accepted %q", schema, doc)
			}
		}
	}
}
