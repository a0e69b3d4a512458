package toolset

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
)

// Calculator is a tool that evaluates arithmetic: numbers, + - * / % ^,
// parentheses, unary minus and the functions sqrt, abs, round, floor, ceil,
// min and max. It parses the expression itself and evaluates nothing else,
// so a model cannot make it run code.
func Calculator(name, description string) chain.Tool {
	if description == "" {
		description = "Evaluate an arithmetic expression such as (12.5 * 4 - 3) / 2 or sqrt(2) ^ 2. Supports + - * / % ^, parentheses, sqrt, abs, round, floor, ceil, min, max."
	}
	return calculator{name: name, desc: description}
}

type calculator struct{ name, desc string }

var exprParams = json.RawMessage(`{"type":"object","properties":{"expression":{"type":"string","description":"the arithmetic expression to evaluate"}},"required":["expression"]}`)

func (c calculator) Def(context.Context) (provider.ToolDef, error) {
	return provider.ToolDef{Name: c.name, Description: c.desc, Parameters: exprParams}, nil
}

func (c calculator) Call(_ context.Context, arguments string) (string, error) {
	var args struct {
		Expression string `json:"expression"`
	}
	if err := json.Unmarshal([]byte(arguments), &args); err != nil {
		return "", fmt.Errorf("arguments must be a JSON object {\"expression\": \"...\"}: %v", err)
	}
	v, err := Eval(args.Expression)
	if err != nil {
		return "", err
	}
	return strconv.FormatFloat(v, 'f', -1, 64), nil
}

// maxExprLen and maxDepth bound the work one expression can cause.
const (
	maxExprLen = 1000
	maxDepth   = 64
)

// Eval evaluates an arithmetic expression. ^ is power and binds tighter
// than unary minus on its left (-2^2 = -4) and to the right (2^3^2 = 512).
func Eval(expr string) (float64, error) {
	if strings.TrimSpace(expr) == "" {
		return 0, fmt.Errorf("expression is empty")
	}
	if len(expr) > maxExprLen {
		return 0, fmt.Errorf("expression is %d characters; at most %d", len(expr), maxExprLen)
	}
	p := &parser{src: expr}
	v, err := p.expr(0)
	if err != nil {
		return 0, err
	}
	p.space()
	if p.pos < len(p.src) {
		return 0, fmt.Errorf("unexpected %q at position %d", p.src[p.pos:], p.pos+1)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("the result is not a finite number")
	}
	return v, nil
}

type parser struct {
	src string
	pos int
}

func (p *parser) space() {
	for p.pos < len(p.src) && (p.src[p.pos] == ' ' || p.src[p.pos] == '\t' || p.src[p.pos] == '\n') {
		p.pos++
	}
}

func (p *parser) peek() byte {
	p.space()
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

// expr := term (('+'|'-') term)*
func (p *parser) expr(depth int) (float64, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("expression nests deeper than %d", maxDepth)
	}
	v, err := p.term(depth)
	if err != nil {
		return 0, err
	}
	for {
		switch p.peek() {
		case '+':
			p.pos++
			r, err := p.term(depth)
			if err != nil {
				return 0, err
			}
			v += r
		case '-':
			p.pos++
			r, err := p.term(depth)
			if err != nil {
				return 0, err
			}
			v -= r
		default:
			return v, nil
		}
	}
}

// term := unary (('*'|'/'|'%') unary)*
func (p *parser) term(depth int) (float64, error) {
	v, err := p.unary(depth)
	if err != nil {
		return 0, err
	}
	for {
		op := p.peek()
		if op != '*' && op != '/' && op != '%' {
			return v, nil
		}
		p.pos++
		if op == '*' && p.peek() == '*' { // ** as power
			p.pos++
			r, err := p.unary(depth)
			if err != nil {
				return 0, err
			}
			v = math.Pow(v, r)
			continue
		}
		r, err := p.unary(depth)
		if err != nil {
			return 0, err
		}
		switch op {
		case '*':
			v *= r
		case '/':
			if r == 0 {
				return 0, fmt.Errorf("division by zero")
			}
			v /= r
		case '%':
			if r == 0 {
				return 0, fmt.Errorf("modulo by zero")
			}
			v = math.Mod(v, r)
		}
	}
}

// unary := ('-'|'+') unary | power
func (p *parser) unary(depth int) (float64, error) {
	switch p.peek() {
	case '-':
		p.pos++
		v, err := p.unary(depth + 1)
		return -v, err
	case '+':
		p.pos++
		return p.unary(depth + 1)
	}
	return p.power(depth)
}

// power := atom ('^' unary)?
func (p *parser) power(depth int) (float64, error) {
	v, err := p.atom(depth)
	if err != nil {
		return 0, err
	}
	if p.peek() == '^' {
		p.pos++
		r, err := p.unary(depth + 1)
		if err != nil {
			return 0, err
		}
		return math.Pow(v, r), nil
	}
	return v, nil
}

var funcs = map[string]func([]float64) (float64, error){
	"sqrt": unaryFn(func(x float64) (float64, error) {
		if x < 0 {
			return 0, fmt.Errorf("sqrt of a negative number")
		}
		return math.Sqrt(x), nil
	}),
	"abs":   unaryFn(func(x float64) (float64, error) { return math.Abs(x), nil }),
	"round": unaryFn(func(x float64) (float64, error) { return math.Round(x), nil }),
	"floor": unaryFn(func(x float64) (float64, error) { return math.Floor(x), nil }),
	"ceil":  unaryFn(func(x float64) (float64, error) { return math.Ceil(x), nil }),
	"min":   foldFn(math.Min),
	"max":   foldFn(math.Max),
}

func unaryFn(f func(float64) (float64, error)) func([]float64) (float64, error) {
	return func(a []float64) (float64, error) {
		if len(a) != 1 {
			return 0, fmt.Errorf("takes 1 argument, got %d", len(a))
		}
		return f(a[0])
	}
}

func foldFn(f func(a, b float64) float64) func([]float64) (float64, error) {
	return func(a []float64) (float64, error) {
		if len(a) == 0 {
			return 0, fmt.Errorf("takes at least 1 argument")
		}
		v := a[0]
		for _, x := range a[1:] {
			v = f(v, x)
		}
		return v, nil
	}
}

// atom := number | '(' expr ')' | name '(' expr (',' expr)* ')'
func (p *parser) atom(depth int) (float64, error) {
	c := p.peek()
	switch {
	case c == '(':
		p.pos++
		v, err := p.expr(depth + 1)
		if err != nil {
			return 0, err
		}
		if p.peek() != ')' {
			return 0, fmt.Errorf("missing ) at position %d", p.pos+1)
		}
		p.pos++
		return v, nil
	case c >= '0' && c <= '9' || c == '.':
		start := p.pos
		for p.pos < len(p.src) && (p.src[p.pos] >= '0' && p.src[p.pos] <= '9' || p.src[p.pos] == '.') {
			p.pos++
		}
		if p.pos < len(p.src) && (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') {
			p.pos++
			if p.pos < len(p.src) && (p.src[p.pos] == '+' || p.src[p.pos] == '-') {
				p.pos++
			}
			for p.pos < len(p.src) && p.src[p.pos] >= '0' && p.src[p.pos] <= '9' {
				p.pos++
			}
		}
		v, err := strconv.ParseFloat(p.src[start:p.pos], 64)
		if err != nil {
			return 0, fmt.Errorf("bad number %q at position %d", p.src[start:p.pos], start+1)
		}
		return v, nil
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		start := p.pos
		for p.pos < len(p.src) && (p.src[p.pos] >= 'a' && p.src[p.pos] <= 'z' || p.src[p.pos] >= 'A' && p.src[p.pos] <= 'Z') {
			p.pos++
		}
		name := strings.ToLower(p.src[start:p.pos])
		f, ok := funcs[name]
		if !ok {
			return 0, fmt.Errorf("unknown name %q at position %d; only numbers, operators and sqrt, abs, round, floor, ceil, min, max are allowed", name, start+1)
		}
		if p.peek() != '(' {
			return 0, fmt.Errorf("%s needs arguments in parentheses", name)
		}
		p.pos++
		var args []float64
		for {
			v, err := p.expr(depth + 1)
			if err != nil {
				return 0, err
			}
			args = append(args, v)
			if p.peek() == ',' {
				p.pos++
				continue
			}
			break
		}
		if p.peek() != ')' {
			return 0, fmt.Errorf("missing ) after the arguments of %s", name)
		}
		p.pos++
		v, err := f(args)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		return v, nil
	case c == 0:
		return 0, fmt.Errorf("expression ends where a number was expected")
	}
	return 0, fmt.Errorf("unexpected %q at position %d", string(c), p.pos+1)
}
