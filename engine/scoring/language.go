package scoring

import (
	"maps"
	"slices"
	"strings"
	"unicode"
)

// detectLanguage guesses the ISO 639-1 code of a text for IFEval's
// response_language instruction without a statistical model: the dominant
// script decides where a script belongs to one language, and stopwords
// decide between languages that share a script (Latin, Devanagari, Arabic,
// Cyrillic). It returns "" when nothing is recognized.
func detectLanguage(text string) string {
	counts := map[string]int{}
	for _, r := range text {
		if s := scriptOf(r); s != "" {
			counts[s]++
		}
	}
	best, n := "", 0
	for s, c := range counts {
		if c > n || (c == n && s < best) {
			best, n = s, c
		}
	}
	if counts["kana"] > 0 && (best == "han" || best == "kana") {
		return "ja"
	}
	switch best {
	case "":
		return ""
	case "latin":
		return byStopwords(text, latinStopwords, "en")
	case "devanagari":
		return byStopwords(text, devanagariStopwords, "hi")
	case "arabic":
		if strings.ContainsAny(text, "پچژگکی") {
			return "fa"
		}
		return "ar"
	case "cyrillic":
		if strings.ContainsAny(text, "іїєґ") {
			return "uk"
		}
		return byStopwords(text, cyrillicStopwords, "ru")
	case "han":
		return "zh"
	}
	return best // the scripts below map to one language each
}

func scriptOf(r rune) string {
	switch {
	case unicode.Is(unicode.Latin, r):
		return "latin"
	case unicode.Is(unicode.Devanagari, r):
		return "devanagari"
	case unicode.Is(unicode.Arabic, r):
		return "arabic"
	case unicode.Is(unicode.Cyrillic, r):
		return "cyrillic"
	case unicode.Is(unicode.Hangul, r):
		return "ko"
	case unicode.Is(unicode.Hiragana, r), unicode.Is(unicode.Katakana, r):
		return "kana"
	case unicode.Is(unicode.Han, r):
		return "han"
	case unicode.Is(unicode.Thai, r):
		return "th"
	case unicode.Is(unicode.Bengali, r):
		return "bn"
	case unicode.Is(unicode.Gurmukhi, r):
		return "pa"
	case unicode.Is(unicode.Gujarati, r):
		return "gu"
	case unicode.Is(unicode.Tamil, r):
		return "ta"
	case unicode.Is(unicode.Telugu, r):
		return "te"
	case unicode.Is(unicode.Kannada, r):
		return "kn"
	case unicode.Is(unicode.Malayalam, r):
		return "ml"
	case unicode.Is(unicode.Greek, r):
		return "el"
	case unicode.Is(unicode.Hebrew, r):
		return "he"
	}
	return ""
}

var latinStopwords = map[string][]string{
	"en": {"the", "and", "of", "to", "is", "in", "that", "it", "you", "for", "with", "this", "are"},
	"vi": {"và", "của", "là", "không", "các", "những", "có", "một", "được", "cho", "trong", "với", "này", "người"},
	"sw": {"na", "wa", "ya", "kwa", "ni", "za", "katika", "la", "kuwa", "hii", "yako", "cha", "kama"},
	"de": {"der", "die", "und", "das", "ist", "nicht", "ich", "mit", "sie", "den", "ein", "zu"},
	"fr": {"le", "la", "les", "et", "est", "des", "une", "pas", "que", "pour", "dans", "vous"},
	"es": {"el", "los", "las", "y", "es", "una", "que", "por", "para", "con", "del", "pero"},
	"it": {"il", "di", "che", "è", "non", "una", "per", "gli", "sono", "della", "con", "anche"},
	"pt": {"o", "os", "que", "não", "uma", "com", "para", "do", "da", "em", "é", "você"},
	"nl": {"de", "het", "een", "en", "van", "niet", "dat", "is", "ik", "je", "voor", "zijn"},
	"fi": {"ja", "on", "ei", "että", "se", "hän", "oli", "mutta", "kun", "tai", "myös"},
}

var devanagariStopwords = map[string][]string{
	"hi": {"है", "और", "के", "में", "की", "का", "हैं", "को", "से", "यह", "नहीं", "था"},
	"mr": {"आहे", "आणि", "हे", "या", "आहेत", "ते", "मध्ये", "होते", "नाही", "त्या", "तुम्ही", "करा"},
	"ne": {"छ", "र", "को", "मा", "हो", "गर्न", "छन्", "पनि", "लागि", "भएको"},
}

var cyrillicStopwords = map[string][]string{
	"ru": {"и", "в", "не", "на", "что", "с", "как", "это", "по", "он", "я"},
	"bg": {"и", "в", "не", "на", "че", "с", "като", "това", "по", "се", "са"},
}

// byStopwords picks the language whose stopwords occur most often, def on
// no hit or a tie with def.
func byStopwords(text string, lists map[string][]string, def string) string {
	words := map[string]int{}
	for _, w := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsPunct(r) || r == '।'
	}) {
		words[w]++
	}
	best, bestN := def, 0
	for _, lang := range slices.Sorted(maps.Keys(lists)) {
		n := 0
		for _, w := range lists[lang] {
			n += words[w]
		}
		if n > bestN || (n == bestN && lang == def && n > 0) {
			best, bestN = lang, n
		}
	}
	return best
}
