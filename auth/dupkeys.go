package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// maxJSONDepth bounds how deep checkUniqueKeys walks: a token's header and claims are flat
// but for a few small objects.
const maxJSONDepth = 32

var (
	errDuplicateKey = errors.New("auth: duplicate key in a JSON object")
	errJSONTooDeep  = errors.New("auth: JSON nested too deep")
)

// checkUniqueKeys returns an error when an object in the JSON document data, at any depth,
// has a member name twice (a JOSE header or a claims set that two parsers could read two
// ways: RFC 7515 section 5.2 and RFC 7519 section 4 ask that they be refused), when it is
// nested deeper than maxJSONDepth, or when it is not JSON. It walks the tokens of a streaming
// decoder: its work is linear in len(data), which the token's size limit bounds.
func checkUniqueKeys(data []byte) error {
	type frame struct {
		obj     bool
		wantKey bool // in an object: the next string is a member name
		keys    map[string]struct{}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	var stack []frame
	value := func() { // a value ended: in an object, a name comes next
		if n := len(stack); n > 0 && stack[n-1].obj {
			stack[n-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if len(stack) >= maxJSONDepth {
					return errJSONTooDeep
				}
				stack = append(stack, frame{obj: v == '{', wantKey: v == '{'})
			default: // '}' or ']'
				stack = stack[:len(stack)-1]
				value()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				f := &stack[n-1]
				if _, dup := f.keys[v]; dup {
					return errDuplicateKey
				}
				if f.keys == nil {
					f.keys = map[string]struct{}{}
				}
				f.keys[v] = struct{}{}
				f.wantKey = false
				continue
			}
			value()
		default:
			value()
		}
	}
}
