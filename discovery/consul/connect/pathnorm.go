package connect

import "strings"

// normalizePath is the path L7 permissions match for HTTP: the decoded path with runs of
// slashes merged and the dot segments "." and ".." resolved (RFC 3986, section 5.2.4), as
// Envoy's normalize_path and merge_slashes make it. A ".." never climbs above the root; a
// trailing slash, or a path ending in a dot segment, keeps its final slash ("/a/b/.." is
// "/a/"); the empty path is "/". So "//admin", "/./admin" and "/x/../admin" are all "/admin",
// which is what a router that cleans paths serves for them.
func normalizePath(p string) string {
	if p == "" || p == "/" {
		return "/"
	}
	segs := strings.Split(p, "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "":
			trailing = last && i > 0
			continue
		case ".":
			trailing = last
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
			continue
		}
		trailing = false
		out = append(out, s)
	}
	n := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		n += "/"
	}
	return n
}

// ambiguousPath reports whether the path of a request target as received (the query, if
// any, is ignored) holds an encoded slash or backslash ("%2F", "%5C", any case) or a
// backslash: a path whose segments a server or router may split differently from the
// decoded path the permissions see. Handler refuses such requests (400) when a permission
// looks at the path.
func ambiguousPath(target string) bool {
	if i := strings.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	if strings.IndexByte(target, '\\') >= 0 {
		return true
	}
	for i := strings.IndexByte(target, '%'); i >= 0 && i+2 < len(target); {
		switch strings.ToUpper(target[i+1 : i+3]) {
		case "2F", "5C":
			return true
		}
		j := strings.IndexByte(target[i+1:], '%')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}
