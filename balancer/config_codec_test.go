package balancer_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/proxyless/proxyless/balancer"
)

func TestConfigDurationStrings(t *testing.T) {
	doc := "policy: least_request\ndecayTime: 5s\noutlier:\n  baseEjectionTime: 10s\n  maxEjectionTime: 2m\nslowStart: {window: 30s}\nhealthCheck: {interval: 2s, timeout: 500ms}\n"
	var c balancer.Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	if c.Policy != balancer.PolicyLeastRequest || c.DecayTime != 5*time.Second || c.Outlier.BaseEjectionTime != 10*time.Second ||
		c.Outlier.MaxEjectionTime != 2*time.Minute || c.SlowStart.Window != 30*time.Second || c.HealthCheck.Timeout != 500*time.Millisecond {
		t.Fatalf("%+v", c)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back balancer.Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !reflect.DeepEqual(back.Outlier, c.Outlier) || !reflect.DeepEqual(*back.HealthCheck, *c.HealthCheck) || back.DecayTime != c.DecayTime {
		t.Fatalf("round trip through %s gave %+v", b, back)
	}
	err = json.Unmarshal([]byte(`{"outlier": {"baseEjectionTime": 30000000000}}`), &back)
	if err == nil || !strings.Contains(err.Error(), "balancer: outlier.baseEjectionTime: want a duration string") {
		t.Fatalf("nanoseconds: %v", err)
	}
	err = yaml.Unmarshal([]byte("policy: random\noutlier:\n  baseEjection: 1s\n"), &back)
	if err == nil || !strings.Contains(err.Error(), "outlier.baseEjection: unknown field") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("unknown field: %v", err)
	}
}
