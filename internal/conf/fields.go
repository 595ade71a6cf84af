package conf

import (
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// field is one configurable field of a struct, promoted fields of embedded structs included.
type field struct {
	name      string
	index     []int
	omitEmpty bool
}

type fields struct {
	list   []field // in declaration order
	byName map[string]field
}

var fieldCache sync.Map // reflect.Type → *fields

// fieldsOf lists the fields of struct type t under their document names: the json tag's name,
// else the yaml tag's, else the Go name with its first letter lowered. Fields tagged "-" and
// unexported fields are left out; an embedded struct without a name of its own (or tagged
// yaml ",inline") has its fields promoted, a shallower field winning over a deeper one.
func fieldsOf(t reflect.Type) *fields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*fields)
	}
	var all []field
	collect(t, nil, &all, map[reflect.Type]bool{})
	// A shallower field wins over a deeper one of the same name; then declaration order.
	sort.SliceStable(all, func(i, j int) bool { return len(all[i].index) < len(all[j].index) })
	fs := &fields{byName: map[string]field{}}
	for _, f := range all {
		if _, dup := fs.byName[f.name]; !dup {
			fs.byName[f.name] = f
			fs.list = append(fs.list, f)
		}
	}
	sort.Slice(fs.list, func(i, j int) bool { return slices.Compare(fs.list[i].index, fs.list[j].index) < 0 })
	fieldCache.Store(t, fs)
	return fs
}

func collect(t reflect.Type, index []int, all *[]field, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts, tagged := tagOf(sf)
		if name == "-" && opts == "" && tagged {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		ft := sf.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if sf.Anonymous && ft.Kind() == reflect.Struct && (name == "" || strings.Contains(opts, "inline")) {
			collect(ft, idx, all, visiting)
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			r, n := utf8.DecodeRuneInString(sf.Name)
			name = string(unicode.ToLower(r)) + sf.Name[n:]
		}
		*all = append(*all, field{name: name, index: idx, omitEmpty: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")})
	}
}

// tagOf returns the name and options of a field's json tag, else its yaml tag.
func tagOf(sf reflect.StructField) (name, opts string, tagged bool) {
	for _, key := range []string{"json", "yaml"} {
		if tag, ok := sf.Tag.Lookup(key); ok {
			name, opts, _ = strings.Cut(tag, ",")
			if name != "" || key == "yaml" {
				return name, opts, true
			}
			// json:",omitempty" without a name: keep the options, look for a yaml name.
			if y, ok := sf.Tag.Lookup("yaml"); ok {
				yn, yo, _ := strings.Cut(y, ",")
				return yn, opts + "," + yo, true
			}
			return "", opts, true
		}
	}
	return "", "", false
}

// suggest returns ` (did you mean "x"?)` when key is a known field in another spelling:
// snake_case or another case of a camelCase name.
func (fs *fields) suggest(key string) string {
	want := normalizeKey(key)
	for _, f := range fs.list {
		if normalizeKey(f.name) == want {
			return ` (did you mean "` + f.name + `"?)`
		}
	}
	return ""
}

func normalizeKey(s string) string {
	return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
}
