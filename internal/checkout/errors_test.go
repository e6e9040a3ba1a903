package checkout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
)

func TestIsUnavailable_DependencyGoneNotBug(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		fmt.Errorf("reserve: %w", ErrUnavailable),
		fmt.Errorf("charge: %w", context.DeadlineExceeded),
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
	} {
		if !IsUnavailable(err) {
			t.Errorf("%v: not unavailable", err)
		}
	}
	for _, err := range []error{nil, errors.New("bug"), context.Canceled, Errorf(OutOfStock, nil, "x"), ErrForbidden} {
		if IsUnavailable(err) {
			t.Errorf("%v: unavailable", err)
		}
	}
}
