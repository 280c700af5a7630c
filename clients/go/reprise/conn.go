package reprise

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// dial opens a lazy connection. gRPC's default reconnect backoff grows to
// two minutes, far too slow to notice a restarted coordinator, so it is
// capped at a few seconds here. A token goes on every call as
// "authorization: Bearer TOKEN".
func dial(address, token string, extra []grpc.DialOption) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	return grpc.NewClient(address, append(opts, extra...)...)
}

// bearerToken is a coordinator token (reprise serve --auth-tokens), sent on
// every call. It is sent over plaintext too, as the coordinator may be
// reached over a trusted network or a local proxy that terminates TLS.
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return false }

// isTransient reports whether a failed call may succeed if repeated: the
// coordinator is down, restarting or overloaded. Everything else (a bad
// request, missing auth) will fail the same way again.
func isTransient(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.Internal, codes.Unknown, codes.Canceled:
		return true
	}
	return false
}

// retryBackoff is the delay before reconnect try n (from 0): exponential
// from 100 ms, capped at 5 s, with jitter so many workers do not retry in step.
func retryBackoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// sleepCtx waits d, or less if ctx ends first; it reports whether ctx is
// still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
