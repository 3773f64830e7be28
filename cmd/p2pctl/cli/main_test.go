package cli

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/p2pd/p2pd/testbed"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testbed.IgnoredGoroutines()...)
}
