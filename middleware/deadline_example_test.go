package middleware_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/proxyless/proxyless/middleware"
)

// A server that caps every request's deadline at 2 s: a client that says it has 1.5 s left
// (as a proxyless Transport does in TimeoutHeader) gets its own deadline, one that says 10 s
// gets the cap.
func ExampleWithMaxServerDeadline() {
	h, err := middleware.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dl, _ := r.Context().Deadline()
		left := time.Until(dl)
		fmt.Println(left > 1400*time.Millisecond && left <= 1500*time.Millisecond, left > 1900*time.Millisecond && left <= 2*time.Second)
	}), middleware.WithMaxServerDeadline(2*time.Second))
	if err != nil {
		panic(err)
	}
	for _, ms := range []string{"1500", "10000"} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(middleware.TimeoutHeader, ms)
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	// Output:
	// true false
	// false true
}
