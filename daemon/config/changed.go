package config

import (
	"reflect"
	"strings"
)

// Changed lists the key paths whose values differ between a and b, in the order of the
// Config struct: "log.level", "admin.tokens" (a list is one path: it changed as a whole).
// It never returns values, so it is safe for logs and the audit log even for secret keys.
func Changed(a, b Config) []string {
	var out []string
	changed(reflect.ValueOf(a), reflect.ValueOf(b), "", &out)
	return out
}

func changed(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "-" || !t.Field(i).IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(t.Field(i).Name) // yaml's own default
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		fa, fb := a.Field(i), b.Field(i)
		if fa.Kind() == reflect.Struct {
			changed(fa, fb, path, out)
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			*out = append(*out, path)
		}
	}
}
