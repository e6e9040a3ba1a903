package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/checkout-backend/checkout/internal/checkout"
)

func TestMapErr_UnreachableIsUnavailable_RestUntouched(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		&pgconn.PgError{Code: "57P01"}, &pgconn.PgError{Code: "08006"}, &pgconn.PgError{Code: "53300"},
		&pgconn.PgError{Code: "57014"}, &pgconn.PgError{Code: "55P03"}, io.ErrUnexpectedEOF, syscall.ECONNREFUSED,
		fmt.Errorf("reserve: %w", context.DeadlineExceeded),
	} {
		got := mapErr(err)
		if !errors.Is(got, checkout.ErrUnavailable) || !errors.Is(got, err) {
			t.Errorf("%v: %v, want ErrUnavailable wrapping it", err, got)
		}
	}
	for _, err := range []error{&pgconn.PgError{Code: "23505"}, errors.New("bug"), checkout.Errorf(checkout.OutOfStock, nil, "x")} {
		if got := mapErr(err); errors.Is(got, checkout.ErrUnavailable) || got != err {
			t.Errorf("%v mapped to %v", err, got)
		}
	}
	if mapErr(nil) != nil {
		t.Error("nil mapped")
	}
}
