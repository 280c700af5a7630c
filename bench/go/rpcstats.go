package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
	"google.golang.org/grpc"
)

// rpcStats counts the Reprise client's unary calls by method (--rpc-stats):
// how many, how many items they carried (leased attempts, reported outcomes,
// submissions) and how long they took at the caller. A diagnostic only; it
// does not change what the client sends.
type rpcStats struct {
	mu      sync.Mutex
	methods map[string]*methodStats
}

type methodStats struct {
	calls, items int
	total        time.Duration
}

func newRPCStats() *rpcStats { return &rpcStats{methods: map[string]*methodStats{}} }

func (s *rpcStats) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		err := invoker(ctx, method, req, reply, cc, opts...)
		elapsed := time.Since(start)
		items := 0
		switch r := req.(type) {
		case *reprisev1.ReportOutcomesRequest:
			items = len(r.GetOutcomes())
		case *reprisev1.SubmitBatchRequest:
			items = len(r.GetSubmissions())
		case *reprisev1.HeartbeatRequest:
			items = len(r.GetLeaseTokens())
		}
		if r, ok := reply.(*reprisev1.LeaseAttemptsResponse); ok {
			items = len(r.GetAttempts())
		}
		s.mu.Lock()
		m := s.methods[method]
		if m == nil {
			m = &methodStats{}
			s.methods[method] = m
		}
		m.calls++
		m.items += items
		m.total += elapsed
		s.mu.Unlock()
		return err
	}
}

func (s *rpcStats) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.methods))
	for n := range s.methods {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		m := s.methods[n]
		fmt.Fprintf(w, "rpc %s: %d calls, %d items (%.1f per call), mean %.2f ms\n",
			n, m.calls, m.items, float64(m.items)/float64(m.calls), float64(m.total.Microseconds())/1000/float64(m.calls))
	}
}
