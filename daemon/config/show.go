package config

import (
	"bytes"
	"io"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted is what a secret value prints as.
const Redacted = "<redacted>"

// Sensitive fields are marked in Config with the struct tag `secret:"true"` (string fields
// only), and nowhere else: Redact and SecretPaths read the tag.

// Redact returns a copy of c with every non-empty secret field replaced by Redacted. It
// copies the lists it walks, so c is left as it was.
func (c Config) Redact() Config {
	redact(reflect.ValueOf(&c).Elem())
	return c
}

func redact(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := v.Field(i)
			if t.Field(i).Tag.Get("secret") == "true" {
				if f.Kind() != reflect.String {
					panic("config: secret tag on a non-string field " + t.Field(i).Name)
				}
				if f.String() != "" {
					f.SetString(Redacted)
				}
				continue
			}
			redact(f)
		}
	case reflect.Slice:
		if v.IsNil() {
			return
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(n, v)
		v.Set(n)
		for i := range n.Len() {
			redact(n.Index(i))
		}
	}
}

// SecretPaths lists the key paths of the secret fields, lists written as "[]"
// ("admin.tokens[].sha256").
func SecretPaths() []string {
	var paths []string
	var visit func(t reflect.Type, prefix string)
	visit = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			path := name
			if prefix != "" {
				path = prefix + "." + name
			}
			ft := sf.Type
			switch {
			case sf.Tag.Get("secret") == "true":
				paths = append(paths, path)
			case ft.Kind() == reflect.Struct:
				visit(ft, path)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				visit(ft.Elem(), path+"[]")
			}
		}
	}
	visit(reflect.TypeFor[Config](), "")
	sort.Strings(paths)
	return paths
}

// WriteYAML writes c, redacted, as one YAML document that Parse reads back: every key,
// defaults included.
func (c Config) WriteYAML(w io.Writer) error {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(c.Redact()); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(b.Bytes())
	return err
}
