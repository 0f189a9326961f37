package guardduty

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// timeLayout is how GuardDuty writes the times it sends as strings; the
// few members the SDK decodes into time.Time are written back the same way.
const timeLayout = "2006-01-02T15:04:05.000Z"

var timeType = reflect.TypeOf(time.Time{})

// appendPascal appends v, an SDK value (a types.Finding), as JSON with the
// member names of the AWS API model: the SDK's exported field names, which
// are the model's PascalCase names (spec/aws-formats.md §10). Absent members
// (nil pointers, slices and maps, empty enum strings) are left out, as the
// reference's SDK did; map keys are data and kept as they are (sorted, for a
// stable payload).
func appendPascal(dst []byte, v reflect.Value) ([]byte, error) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return append(dst, "null"...), nil
		}
		return appendPascal(dst, v.Elem())
	case reflect.Struct:
		if v.Type() == timeType {
			return strconv.AppendQuote(dst, v.Interface().(time.Time).UTC().Format(timeLayout)), nil
		}
		dst = append(dst, '{')
		first := true
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() || absent(v.Field(i)) {
				continue
			}
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = strconv.AppendQuote(dst, f.Name)
			dst = append(dst, ':')
			var err error
			if dst, err = appendPascal(dst, v.Field(i)); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				dst = append(dst, ',')
			}
			var err error
			if dst, err = appendPascal(dst, v.Index(i)); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	case reflect.Map:
		if v.IsNil() {
			return append(dst, "null"...), nil
		}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			return strings.Compare(fmt.Sprint(a.Interface()), fmt.Sprint(b.Interface()))
		})
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendQuote(dst, fmt.Sprint(k.Interface()))
			dst = append(dst, ':')
			var err error
			if dst, err = appendPascal(dst, v.MapIndex(k)); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		// encoding/json writes scalars exactly as JSON wants them (string
		// escapes, 8 rather than 8.0, no NaN).
		// HTML escaping is off: "C&C" stays as GuardDuty wrote it.
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v.Interface()); err != nil {
			return dst, err
		}
		return append(dst, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...), nil
	}
	return dst, fmt.Errorf("guardduty: cannot render a %s", v.Type())
}

// absent reports whether a struct member was not in the response.
func absent(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Slice, reflect.Map:
		return v.IsNil()
	case reflect.String:
		// Enum members are plain strings in the SDK; "" means absent.
		return v.Len() == 0
	}
	return false
}
