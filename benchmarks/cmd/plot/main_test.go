package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const benchOut = `goos: linux
BenchmarkPick/n=10/impl=atomic_rr-2         	100	 2.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=10/impl=p2c-2               	100	 20.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=1000/impl=atomic_rr-2       	100	 2.2 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=1000/impl=p2c-2             	100	 21.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=10/impl=atomic_rr-2         	100	 4.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=10/impl=p2c-2               	100	 24.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=1000/impl=atomic_rr-2       	100	 2.2 ns/op	 0 B/op	 0 allocs/op
BenchmarkPick/n=1000/impl=p2c-2             	100	 22.0 ns/op	 0 B/op	 0 allocs/op
BenchmarkMemoryPerKey/keys=10/impl=map+rate-2	3	 200 B/key	 5 allocs/op
BenchmarkMemoryPerKey/keys=10/impl=keyed-2	3	 100 B/key	 1 allocs/op
PASS
`

func TestSummaryAndPlots(t *testing.T) {
	all, err := parseBench(strings.NewReader(benchOut))
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 6 {
		t.Fatalf("%d series, want 6", len(all))
	}
	md := summary(all)
	for _, want := range []string{
		"| n=10 | p2c | 22.0 | 7.33× [6.00 – 10.00] |",
		"| n=10 | atomic_rr | 3.00 | baseline |",
		"| keys=10 | keyed | 100 | 0.50× [0.50 – 0.50] | 1.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("summary lacks %q:\n%s", want, md)
		}
	}
	svg, ok := scaleSVG(all, "Pick", "ns/op", "t", "y", true)
	if !ok {
		t.Fatal("no pick plot")
	}
	if err := xml.Unmarshal([]byte(svg), new(struct{})); err != nil {
		t.Fatalf("pick plot is not XML: %v", err)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bench.txt"), []byte(benchOut), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(dir, filepath.Join(dir, "plots")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "plots", "pick-scale.svg")); err != nil {
		t.Fatal(err)
	}
}
