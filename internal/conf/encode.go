package conf

import (
	"bytes"
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

var textMarshal = reflect.TypeFor[encoding.TextMarshaler]()

// Node encodes v as Decode reads it: structs as mappings under their fields' document names
// (fields tagged omitempty left out when zero), durations as strings such as "250ms". It is
// what a MarshalYAML method returns.
func Node(v any) (*yaml.Node, error) {
	return encode(reflect.ValueOf(v))
}

// MarshalJSON encodes v as JSON the way Node does, for a MarshalJSON method.
func MarshalJSON(v any) ([]byte, error) {
	n, err := Node(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := writeJSON(&b, n); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func scalar(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

func encode(v reflect.Value) (*yaml.Node, error) {
	if !v.IsValid() {
		return scalar(nullTag, "null"), nil
	}
	t := v.Type()
	switch {
	case isDuration(t):
		return scalar(strTag, time.Duration(v.Int()).String()), nil
	case t.Kind() != reflect.Pointer && t.Kind() != reflect.Interface && t.Implements(textMarshal):
		b, err := v.Interface().(encoding.TextMarshaler).MarshalText()
		if err != nil {
			return nil, err
		}
		return scalar(strTag, string(b)), nil
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return scalar(nullTag, "null"), nil
		}
		return encode(v.Elem())
	case reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, f := range fieldsOf(t).list {
			fv, ok := fieldValue(v, f.index)
			if !ok || (f.omitEmpty && fv.IsZero()) {
				continue
			}
			c, err := encode(fv)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, scalar(strTag, f.name), c)
		}
		return n, nil
	case reflect.Map:
		return encodeMap(v)
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && v.IsNil() {
			return scalar(nullTag, "null"), nil
		}
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			c, err := encode(v.Index(i))
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case reflect.String:
		return scalar(strTag, v.String()), nil
	case reflect.Bool:
		return scalar(boolTag, strconv.FormatBool(v.Bool())), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalar(intTag, strconv.FormatInt(v.Int(), 10)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return scalar(intTag, strconv.FormatUint(v.Uint(), 10)), nil
	case reflect.Float32, reflect.Float64:
		return encodeFloat(v.Float(), t.Bits()), nil
	}
	return nil, fmt.Errorf("cannot encode %v", t)
}

func encodeFloat(f float64, bits int) *yaml.Node {
	switch {
	case math.IsNaN(f):
		return scalar(floatTag, ".nan")
	case math.IsInf(f, 1):
		return scalar(floatTag, ".inf")
	case math.IsInf(f, -1):
		return scalar(floatTag, "-.inf")
	}
	return scalar(floatTag, strconv.FormatFloat(f, 'g', -1, bits))
}

// fieldValue is v.FieldByIndex, reporting false for a field inside a nil embedded pointer.
func fieldValue(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

func encodeMap(v reflect.Value) (*yaml.Node, error) {
	if v.IsNil() {
		return scalar(nullTag, "null"), nil
	}
	type entry struct {
		key string
		val reflect.Value
	}
	var entries []entry
	for it := v.MapRange(); it.Next(); {
		k, err := encode(it.Key())
		if err != nil {
			return nil, err
		}
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("cannot encode a map key of %v", it.Key().Type())
		}
		entries = append(entries, entry{k.Value, it.Value()})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, e := range entries {
		c, err := encode(e.val)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, scalar(strTag, e.key), c)
	}
	return n, nil
}

// writeJSON writes a node tree that encode made.
func writeJSON(b *bytes.Buffer, n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode, yaml.SequenceNode:
		open, close := byte('{'), byte('}')
		if n.Kind == yaml.SequenceNode {
			open, close = '[', ']'
		}
		b.WriteByte(open)
		for i, c := range n.Content {
			if i > 0 {
				if n.Kind == yaml.MappingNode && i%2 == 1 {
					b.WriteByte(':')
				} else {
					b.WriteByte(',')
				}
			}
			if err := writeJSON(b, c); err != nil {
				return err
			}
		}
		b.WriteByte(close)
		return nil
	}
	switch n.Tag {
	case strTag:
		s, err := json.Marshal(n.Value)
		if err != nil {
			return err
		}
		b.Write(s)
	case floatTag:
		if f, err := strconv.ParseFloat(n.Value, 64); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("cannot encode %s in JSON", n.Value)
		}
		b.WriteString(n.Value)
	default:
		b.WriteString(n.Value)
	}
	return nil
}
