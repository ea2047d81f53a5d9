package telemetry

import (
	"errors"
	"testing"
)

func TestHexIDsToBase64(t *testing.T) {
	tests := map[string]struct {
		in, want string
		bad      bool
	}{
		"ids rewritten": {
			in:   `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102","spanId":"ff","name":"traceId","links":[{"span_id":"0a"}]}]}]}]}`,
			want: `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"AQI=","spanId":"/w==","name":"traceId","links":[{"span_id":"Cg=="}]}]}]}]}`,
		},
		"other values kept": {
			in:   ` { "a" : [1, 2.5e3, true, false, null, "x\u00e9\"", {}, []], "parentSpanId": "", "b": {"traceId": null} } `,
			want: `{"a":[1,2.5e3,true,false,null,"xé\"",{},[]],"parentSpanId":"","b":{"traceId":null}}`,
		},
		"not hex":        {in: `{"traceId":"xyz"}`, bad: true},
		"odd hex":        {in: `{"spanId":"abc"}`, bad: true},
		"array document": {in: `[]`, bad: true},
		"scalar":         {in: `"x"`, bad: true},
		"empty":          {in: ``, bad: true},
		"trailing":       {in: `{} {}`, bad: true},
		"unterminated":   {in: `{"a":[1,2}`, bad: true},
		"missing colon":  {in: `{"a" 1}`, bad: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := hexIDsToBase64([]byte(tc.in))
			if tc.bad {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("got %q, %v; want a malformed error", got, err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v\nwant %s", got, err, tc.want)
			}
		})
	}
}
