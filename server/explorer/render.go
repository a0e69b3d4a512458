package explorer

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/url"
	"strings"
	"time"
)

// pageNames are the templates/<name>.html pages, each drawn inside
// templates/layout.html.
var pageNames = []string{"dashboard", "tenant", "lineage", "variant", "run", "case", "journal", "costs", "error"}

func (s *Server) parseTemplates() error {
	funcs := template.FuncMap{
		"score": func(v float64) string { return fmt.Sprintf("%.2f", v) },
		"scorep": func(v *float64) string {
			if v == nil {
				return "–"
			}
			return fmt.Sprintf("%.2f", *v)
		},
		"usd":  func(v float64) string { return fmt.Sprintf("$%.4f", v) },
		"ms":   func(v float64) string { return fmt.Sprintf("%.0f ms", v) },
		"pct":  func(v float64) string { return fmt.Sprintf("%.0f%%", v*100) },
		"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"timep": func(t *time.Time) string {
			if t == nil {
				return "–"
			}
			return t.UTC().Format("2006-01-02 15:04:05Z")
		},
		"json": func(v any) string {
			b, err := json.MarshalIndent(v, "", "  ")
			if err != nil {
				return err.Error()
			}
			return string(b)
		},
		"indent": func(depth int) string { return strings.Repeat("│  ", depth) },
		// with returns the current query with key set (or removed when
		// value is ""), so links keep the rest of a view's state.
		"q": func(rawQuery string, kv ...string) template.URL {
			q, _ := url.ParseQuery(rawQuery)
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] == "" {
					q.Del(kv[i])
				} else {
					q.Set(kv[i], kv[i+1])
				}
			}
			if len(q) == 0 {
				return "?"
			}
			return template.URL("?" + q.Encode()) //nolint:gosec // G203: a query string built by url.Values.Encode, which escapes every key and value
		},
		"sortq": func(cur CaseQuery, key string) string {
			if cur.Sort == key && !cur.Desc {
				return "1"
			}
			return ""
		},
		"itoa": func(n int) string { return fmt.Sprint(n) },
		"esc":  url.PathEscape,
	}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("explorer template %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return nil
}
