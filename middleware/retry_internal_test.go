package middleware

import (
	"testing"
)

func TestIsServiceName(t *testing.T) {
	for host, want := range map[string]bool{
		"payments": true, "pay-ments_2": true, "": false, "payments:80": false,
		"api.example.com": false, "127.0.0.1": false, "[::1]:80": false,
	} {
		if got := isServiceName(host); got != want {
			t.Errorf("isServiceName(%q) = %v", host, got)
		}
	}
}
