package config

import (
	"slices"
	"testing"
	"time"
)

func TestChanged(t *testing.T) {
	base := Development()
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"a nested key", func(c *Config) { c.Log.Level = "debug" }, []string{"log.level"}},
		{"a duration and a list", func(c *Config) {
			c.GRPC.ShutdownGrace = Duration(time.Minute)
			c.Platforms = append(slices.Clone(c.Platforms), Platform{ID: "new"})
		}, []string{"grpc.shutdown_grace", "platforms"}},
		{"a secret inside a list: the path only", func(c *Config) {
			c.Admin.Tokens = []AdminToken{{Name: "x", Role: RoleAuditor, SHA256: "secret-hash"}}
		}, []string{"admin.tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := base
			tt.mutate(&next)
			if got := Changed(base, next); !slices.Equal(got, tt.want) {
				t.Fatalf("Changed = %v, want %v", got, tt.want)
			}
		})
	}
}
