package route_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/proxyless/proxyless/internal/consultest"
)

var shared consultest.Shared

func TestMain(m *testing.M) { goleak.VerifyTestMain(shared.Wrap(m)) }
