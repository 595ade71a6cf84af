package conf

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Locate returns the line and column of the value at path in a tree from [Parse], for the
// checks a package makes after decoding ("consumers[1].plan: unknown plan"): path is in the
// form Decode's errors use ("a.b[2]", `a["x.y"]`). It returns the deepest node of the path it
// finds (the consumer when its plan field is absent), and 0, 0 when not even the first step
// is there. Locate visits at most the nodes along the path.
func Locate(root *yaml.Node, path string) (line, col int) {
	n := deref(root)
	for path != "" && n != nil {
		var seg string
		var index int
		seg, index, path = nextStep(path)
		var next *yaml.Node
		switch {
		case index >= 0 && n.Kind == yaml.SequenceNode && index < len(n.Content):
			next = n.Content[index]
		case index < 0 && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == seg {
					next = n.Content[i+1]
					break
				}
			}
		}
		if next = deref(next); next == nil {
			break
		}
		n = next
		line, col = n.Line, n.Column
	}
	return line, col
}

// deref skips document nodes and follows aliases (a bounded number of times).
func deref(n *yaml.Node) *yaml.Node {
	for range 16 {
		switch {
		case n == nil:
			return nil
		case n.Kind == yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case n.Kind == yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return nil
}

// nextStep splits the first step off path: a field or key name (index -1), or a list index.
func nextStep(path string) (seg string, index int, rest string) {
	path = strings.TrimPrefix(path, ".")
	if strings.HasPrefix(path, "[") {
		end := strings.IndexByte(path, ']')
		if strings.HasPrefix(path, `["`) {
			// A quoted key: find the closing quote that strconv.Quote wrote.
			for i := 2; i < len(path); i++ {
				if path[i] == '\\' {
					i++
					continue
				}
				if path[i] == '"' {
					if s, err := strconv.Unquote(path[1 : i+1]); err == nil {
						return s, -1, strings.TrimPrefix(path[i+1:], "]")
					}
					break
				}
			}
			return "", -1, ""
		}
		if end < 0 {
			return "", -1, ""
		}
		i, err := strconv.Atoi(path[1:end])
		if err != nil || i < 0 {
			return "", -1, ""
		}
		return "", i, path[end+1:]
	}
	end := strings.IndexAny(path, ".[")
	if end < 0 {
		return path, -1, ""
	}
	return path[:end], -1, path[end:]
}
