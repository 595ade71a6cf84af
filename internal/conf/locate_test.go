package conf

import "testing"

func TestLocate(t *testing.T) {
	yamlDoc := "plans:\n  gold: {perSecond: 1}\n  \"a.b\": {}\nconsumers:\n  - name: x\n  - name: y\n    keys: [k1, k2]\nref: &r {q: 1}\nalias: *r\n"
	jsonDoc := `{"consumers": [{"name": "x"},
  {"name": "y", "keys": ["k1", "k2"]}]}`
	for _, tc := range []struct {
		doc, path string
		line, col int
	}{
		{yamlDoc, "plans.gold.perSecond", 2, 21},
		{yamlDoc, `plans["a.b"]`, 3, 10},
		{yamlDoc, "consumers[1].keys[1]", 7, 16},
		{yamlDoc, "consumers[1].plan", 6, 5}, // absent: the consumer
		{yamlDoc, "consumers[9]", 5, 3},      // absent: the list
		{yamlDoc, "alias.q", 8, 13},          // through the alias
		{yamlDoc, "nothing.here", 0, 0},
		{yamlDoc, "consumers[x", 5, 3},
		{yamlDoc, `plans["unterminated`, 2, 3},
		{jsonDoc, "consumers[1].keys[1]", 2, 32},
		{jsonDoc, "consumers[0].name", 1, 25},
	} {
		root, _, err := Parse([]byte(tc.doc))
		if err != nil {
			t.Fatal(err)
		}
		line, col := Locate(root, tc.path)
		if line != tc.line || col != tc.col {
			t.Errorf("Locate(%q) = line %d, column %d; want %d, %d", tc.path, line, col, tc.line, tc.col)
		}
	}
	if l, c := Locate(nil, "a"); l != 0 || c != 0 {
		t.Errorf("Locate(nil) = %d, %d", l, c)
	}
}
