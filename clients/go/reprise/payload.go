package reprise

import (
	"encoding/json"
	"fmt"

	reprisev1 "github.com/reprise-dev/reprise/clients/go/gen/reprise/v1"
)

// ContentTypeJSON is the content type of every payload this package encodes.
const ContentTypeJSON = "application/json"

// Payload is an already encoded value. Pass it as Submit arguments or return
// it from a handler to send bytes that are not JSON, and pass a *Payload to
// Client.Result to receive the raw result.
type Payload struct {
	Data        []byte
	ContentType string
}

// encodePayload turns a Go value into a wire payload: JSON unless it is
// already a Payload or json.RawMessage.
func encodePayload(v any) (*reprisev1.Payload, error) {
	switch v := v.(type) {
	case Payload:
		return &reprisev1.Payload{Data: v.Data, ContentType: v.ContentType}, nil
	case *Payload:
		return &reprisev1.Payload{Data: v.Data, ContentType: v.ContentType}, nil
	case json.RawMessage:
		return &reprisev1.Payload{Data: v, ContentType: ContentTypeJSON}, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("reprise: encoding %T as JSON: %w", v, err)
	}
	return &reprisev1.Payload{Data: data, ContentType: ContentTypeJSON}, nil
}

// decodePayload stores a wire payload into out: raw for a *Payload, JSON
// otherwise. A nil out discards the value.
func decodePayload(p *reprisev1.Payload, out any) error {
	switch out := out.(type) {
	case nil:
		return nil
	case *Payload:
		*out = Payload{Data: p.GetData(), ContentType: p.GetContentType()}
		return nil
	}
	if len(p.GetData()) == 0 {
		return nil
	}
	if err := json.Unmarshal(p.GetData(), out); err != nil {
		return fmt.Errorf("reprise: decoding %q result into %T: %w", p.GetContentType(), out, err)
	}
	return nil
}
