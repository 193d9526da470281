package hufuv1

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// Timestamp is the API form of a stored time, kept as Unix nanoseconds. Zero is a time that
// was never set (not yet paid, not yet answered), which the API shows as an absent field.
func Timestamp(unixNano int64) *timestamppb.Timestamp {
	if unixNano == 0 {
		return nil
	}
	return timestamppb.New(time.Unix(0, unixNano))
}
