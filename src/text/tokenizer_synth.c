#include "text/tokenizer_synth.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"

/* ---------------- the built-in training text ----------------
 *
 * Common English words, roughly most frequent first; a word's weight is Zipf-like in its
 * rank.  Each word is seen as the pre-tokenizer would cut it out of running text: " word"
 * (most often), " Word", "word" and "Word" (line or text starts). */
static const char *const english_words[] = {
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on", "not",
    "he", "I", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you", "were",
    "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who",
    "so", "no", "she", "other", "its", "may", "these", "what", "them", "than", "some", "him", "time", "into", "only",
    "do", "two", "then", "first", "could", "any", "my", "new", "now", "such", "like", "our", "over", "man", "me",
    "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back", "years", "where",
    "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people", "how", "too",
    "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long", "get", "here",
    "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while", "last", "might",
    "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used", "take", "three",
    "states", "himself", "few", "house", "use", "during", "without", "again", "place", "American", "around",
    "however", "home", "small", "found", "Mrs", "thought", "went", "say", "part", "once", "general", "high", "upon",
    "school", "every", "does", "got", "united", "left", "number", "course", "war", "until", "always",
    "away", "something", "fact", "though", "water", "less", "public", "put", "think", "almost", "hand", "enough",
    "far", "took", "head", "yet", "government", "system", "better", "set", "told", "nothing", "night", "end", "why",
    "called", "eyes", "find", "going", "look", "asked", "later", "knew", "point", "next", "program",
    "city", "business", "give", "group", "toward", "young", "days", "let", "room", "president", "side", "social",
    "given", "present", "several", "order", "national", "possible", "rather", "second", "face", "per", "among",
    "form", "important", "often", "things", "looked", "early", "white", "case", "John", "become", "large", "big",
    "need", "four", "within", "felt", "along", "children", "saw", "best", "church", "ever", "least", "power",
    "development", "light", "thing", "seemed", "family", "interest", "want", "members", "mind", "country", "area",
    "others", "done", "turned", "although", "open", "God", "service", "certain", "kind", "problem", "began",
    "different", "door", "thus", "help", "means", "sense", "whole", "matter", "perhaps", "itself", "York", "times",
    "law", "human", "line", "above", "name", "example", "action", "company", "hands", "local", "show", "whether",
    "five", "history", "gave", "today", "either", "act", "feet", "across", "taken", "past", "quite", "anything",
    "seen", "having", "death", "week", "experience", "body", "word", "half", "really", "field", "am", "car", "words",
    "already", "themselves", "information", "tell", "together", "college", "shall", "money", "period", "held",
    "keep", "sure", "probably", "free", "seems", "real", "behind", "cannot", "miss", "political", "air", "question",
    "making", "office", "brought", "whose", "special", "major", "heard", "problems", "federal", "became", "study",
    "ago", "moment", "available", "known", "result", "street", "economic", "boy", "position", "reason", "change",
    "south", "board", "individual", "job", "areas", "society", "west", "close", "turn", "love", "community", "true",
    "court", "force", "full", "seem", "age", "policy", "wife", "future", "voice", "center", "woman", "control",
    "common", "necessary", "following", "front", "sometimes", "six", "girl", "clear", "further", "land", "run",
    "students", "provide", "feel", "party", "able", "mother", "music", "education", "university", "child", "effect",
    "level", "stood", "military", "town", "short", "morning", "total", "outside", "rate", "figure", "class", "art",
    "century", "washington", "north", "usually", "leave", "therefore", "evidence", "plan", "million", "nature",
    "early", "English", "language", "data", "value", "model", "function", "file", "code", "return", "string",
    "type", "list", "object", "class", "module", "default", "error", "input", "output", "method", "process", "user",
    "server", "memory", "version", "option", "support", "kernel", "device", "driver", "network", "address",
    "example", "following", "section", "chapter", "book", "story", "king", "lord", "said", "unto", "shall", "thou",
    "thee", "thy", "hath", "father", "son", "sons", "children", "people", "land", "earth", "heaven", "spirit",
    "called", "began", "named", "loved", "played", "wanted", "looked", "asked", "tried", "started", "happened",
    "decided", "walked", "talked", "opened", "jumped", "smiled", "laughed", "helped", "showed", "played", "seemed",
    "working", "looking", "getting", "playing", "running", "thinking", "coming", "taking", "saying", "trying",
    "nothing", "everything", "something", "someone", "everyone", "anyone", "nation", "station", "information",
    "education", "population", "situation", "question", "position", "condition", "director", "character",
    "different", "important", "government", "development", "movement", "department", "statement", "management",
    "happiness", "business", "darkness", "quickly", "slowly", "really", "finally", "suddenly", "especially",
    "probably", "usually", "actually", "certainly", "simply", "friend", "friends", "water", "food", "tree", "trees",
    "bird", "dog", "cat", "ball", "park", "sun", "sky", "red", "blue", "green", "black", "happy", "sad", "big",
    "fun", "play", "saw", "toy", "girl", "boy", "mom", "dad", "Lily", "Tim", "Ben", "Sue", "Anna", "day", "once",
    "upon", "named", "little", "very", "loved", "share", "careful", "beautiful", "wonderful", "important",
    "computer", "science", "research", "results", "analysis", "theory", "system", "systems", "method", "methods",
    "training", "learning", "network", "networks", "neural", "weights", "layer", "layers", "attention", "token",
    "tokens", "model", "models", "quantization", "matrix", "vector", "number", "numbers", "value", "values",
    "first", "second", "third", "million", "billion", "percent", "season", "game", "team", "played", "won", "album",
    "song", "released", "film", "series", "episode", "built", "church", "river", "island", "region", "species",
    "army", "battle", "ship", "road", "route", "station", "village", "district", "county", "province", "city",
    "during", "including", "according", "although", "however", "received", "announced", "described", "included",
    "January", "February", "March", "April", "June", "July", "August", "September", "October", "November",
    "December", "Monday", "Sunday", "British", "French", "German", "English", "American", "London", "Europe",
    "hello", "test", "tests", "testing", "quick", "brown", "fox", "lazy", "jumps", "reduce", "reduces", "large",
    "small", "fast", "slow", "speed", "size", "text", "read", "write", "print", "test", "random", "weight", "bits",
    "integer", "float", "point", "group", "order", "scale", "scales", "zero", "zeros", "sample", "samples",
};

/* Pre-tokens that are not words: punctuation, whitespace runs, digit groups, contractions
 * (as the Llama-3 split regex cuts them), with their weights. */
static const struct {
    const char *s;
    int weight;
} other_pretokens[] = {
    {",", 60000}, {".", 55000}, {".\n", 8000}, {".\n\n", 4000}, {"\n", 9000}, {"\n\n", 8000}, {" (", 6000},
    {")", 6000}, {").", 2000}, {"),", 2000}, {" \"", 4000}, {"\"", 3000}, {"\".", 1500}, {",\"", 1500}, {":", 3000},
    {";", 2500}, {"?", 2000}, {"!", 1500}, {" -", 2500}, {" –", 800}, {" —", 800}, {"'s", 5000}, {"'t", 3000},
    {"'re", 800}, {"'ll", 700}, {"'ve", 600}, {"'m", 600}, {"'d", 500}, {" =", 1500}, {" ==", 400}, {" +", 600},
    {" *", 500}, {"()", 900}, {"();", 400}, {" {", 700}, {"}", 700}, {" [", 600}, {"]", 600}, {" //", 300},
    {" /*", 300}, {" */", 300}, {"->", 300}, {"...", 600}, {" @", 200}, {" #", 200}, {"  ", 3000}, {"   ", 1500},
    {"    ", 2500}, {"        ", 1200}, {"\t", 1000}, {"\t\t", 400}, {" $", 300}, {"%", 500}, {" %", 200},
};

/* ---------------- byte strings and a set of them ---------------- */

typedef struct {
    unsigned char *s;
    int len;
} bstr;

/* Tokens in "regular" order: the 256 bytes, then one per merge; plus the specials' texts
 * (registered so that no merge can produce a string equal to a special). */
typedef struct {
    bstr *tok;
    int n, cap;
    int *slots; /* open addressing: token index + 1, 0 = empty */
    uint32_t mask;
} tokset;

static uint64_t hash_bytes(const unsigned char *s, int len) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < len; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static void tokset_init(tokset *t, int expected) {
    memset(t, 0, sizeof *t);
    uint32_t cap = 1024;
    while (cap < (uint32_t)expected * 2u) cap <<= 1;
    t->slots = xcalloc(cap, sizeof(int));
    t->mask = cap - 1;
    t->cap = 1024;
    t->tok = xmalloc(sizeof(bstr) * t->cap);
}

static void tokset_free(tokset *t) {
    for (int i = 0; i < t->n; i++) free(t->tok[i].s);
    free(t->tok), free(t->slots);
}

/* Index of the token with these bytes, or -1. */
static int tokset_find(const tokset *t, const unsigned char *s, int len) {
    for (uint32_t h = (uint32_t)hash_bytes(s, len) & t->mask;; h = (h + 1) & t->mask) {
        int k = t->slots[h];
        if (!k) return -1;
        const bstr *b = &t->tok[k - 1];
        if (b->len == len && memcmp(b->s, s, len) == 0) return k - 1;
    }
}

static void tokset_grow(tokset *t) {
    uint32_t cap = (t->mask + 1) * 2;
    free(t->slots);
    t->slots = xcalloc(cap, sizeof(int));
    t->mask = cap - 1;
    for (int i = 0; i < t->n; i++) {
        uint32_t h = (uint32_t)hash_bytes(t->tok[i].s, t->tok[i].len) & t->mask;
        while (t->slots[h]) h = (h + 1) & t->mask;
        t->slots[h] = i + 1;
    }
}

/* Adds a token (not present yet); returns its index. */
static int tokset_add(tokset *t, const unsigned char *s, int len) {
    if ((uint32_t)(t->n + 1) * 2u > t->mask + 1) tokset_grow(t);
    if (t->n == t->cap) t->tok = xrealloc(t->tok, sizeof(bstr) * (t->cap *= 2));
    bstr *b = &t->tok[t->n];
    b->s = xmalloc(len + 1);
    memcpy(b->s, s, len);
    b->s[len] = 0;
    b->len = len;
    uint32_t h = (uint32_t)hash_bytes(s, len) & t->mask;
    while (t->slots[h]) h = (h + 1) & t->mask;
    t->slots[h] = t->n + 1;
    return t->n++;
}

/* Index of the concatenation of tokens a and b, or -1. */
static int tokset_find_concat(const tokset *t, int a, int b, unsigned char *scratch) {
    const bstr *x = &t->tok[a], *y = &t->tok[b];
    memcpy(scratch, x->s, x->len);
    memcpy(scratch + x->len, y->s, y->len);
    return tokset_find(t, scratch, x->len + y->len);
}

/* ---------------- BPE training on the built-in words ---------------- */

typedef struct {
    int *sym;
    int n;
    long weight;
} cword;

typedef struct {
    int a, b;
} merge_t;

/* Pair counts: open addressing keyed by (a, b), reset through the list of used slots. */
typedef struct {
    uint64_t *keys; /* (a << 32 | b) + 1, 0 = empty */
    long *counts;
    int *used;
    int n_used;
    uint32_t mask;
} paircount;

static void pc_add(paircount *p, int a, int b, long w) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & p->mask;
    while (p->keys[h] && p->keys[h] != key) h = (h + 1) & p->mask;
    if (!p->keys[h]) {
        p->keys[h] = key;
        p->counts[h] = 0;
        p->used[p->n_used++] = (int)h;
    }
    p->counts[h] += w;
}

static void add_word(cword **words, int *n, int *cap, const char *s, long weight) {
    int len = (int)strlen(s);
    if (len == 0 || weight <= 0) return;
    if (*n == *cap) *words = xrealloc(*words, sizeof(cword) * (*cap = *cap ? 2 * *cap : 1024));
    cword *w = &(*words)[(*n)++];
    w->sym = xmalloc(sizeof(int) * len);
    for (int i = 0; i < len; i++) w->sym[i] = (unsigned char)s[i]; /* byte token i is index i */
    w->n = len;
    w->weight = weight;
}

/* Learns up to max_merges merges; appends tokens to ts and merges to out. Returns the count. */
static int learn_merges(tokset *ts, merge_t *out, int max_merges) {
    cword *words = NULL;
    int n_words = 0, cap = 0;
    int n_list = (int)(sizeof english_words / sizeof english_words[0]);
    for (int r = 0; r < n_list; r++) {
        const char *w = english_words[r];
        long f = 2000000L / (r + 20);
        char buf[64];
        snprintf(buf, sizeof buf, " %s", w);
        add_word(&words, &n_words, &cap, buf, f);
        add_word(&words, &n_words, &cap, w, f / 30);
        if (w[0] >= 'a' && w[0] <= 'z') {
            buf[1] = (char)(w[0] - 'a' + 'A');
            add_word(&words, &n_words, &cap, buf, f / 6);
            add_word(&words, &n_words, &cap, buf + 1, f / 10);
        }
    }
    for (size_t i = 0; i < sizeof other_pretokens / sizeof other_pretokens[0]; i++)
        add_word(&words, &n_words, &cap, other_pretokens[i].s, other_pretokens[i].weight);
    char num[8];
    for (int d = 0; d < 100; d++) { /* digit groups of one to three, as \p{N}{1,3} cuts them */
        snprintf(num, sizeof num, "%d", d);
        add_word(&words, &n_words, &cap, num, d < 10 ? 3000 : 600);
        snprintf(num, sizeof num, "%02d", d);
        if (d < 10) add_word(&words, &n_words, &cap, num, 400);
        snprintf(num, sizeof num, "%d00", d % 10);
        if (d < 10) add_word(&words, &n_words, &cap, num, 300);
        snprintf(num, sizeof num, "%d", 190 + d % 20);
        if (d < 20) add_word(&words, &n_words, &cap, num, 500);
    }

    int total = 0;
    for (int i = 0; i < n_words; i++) total += words[i].n;
    paircount pc;
    uint32_t pcap = 1024;
    while (pcap < (uint32_t)total * 2u) pcap <<= 1;
    pc.keys = xcalloc(pcap, sizeof(uint64_t));
    pc.counts = xcalloc(pcap, sizeof(long));
    pc.used = xmalloc(sizeof(int) * pcap);
    pc.n_used = 0;
    pc.mask = pcap - 1;
    int max_len = 0;
    for (int i = 0; i < n_words; i++) max_len = words[i].n > max_len ? words[i].n : max_len;
    unsigned char *scratch = xmalloc(max_len + 1);

    int n_merges = 0;
    while (n_merges < max_merges) {
        for (int i = 0; i < pc.n_used; i++) pc.keys[pc.used[i]] = 0;
        pc.n_used = 0;
        for (int i = 0; i < n_words; i++) {
            const cword *w = &words[i];
            for (int j = 0; j + 1 < w->n; j++) pc_add(&pc, w->sym[j], w->sym[j + 1], w->weight);
        }
        /* The most frequent pair whose concatenation is not a token yet; ties to the
         * smallest (a, b). */
        long best = 0;
        uint64_t best_key = 0;
        for (int i = 0; i < pc.n_used; i++) {
            int h = pc.used[i];
            long c = pc.counts[h];
            if (c < best || (c == best && pc.keys[h] > best_key)) continue;
            int a = (int)((pc.keys[h] - 1) >> 32), b = (int)((pc.keys[h] - 1) & 0xffffffffu);
            if (tokset_find_concat(ts, a, b, scratch) >= 0) continue;
            best = c;
            best_key = pc.keys[h];
        }
        if (!best) break;
        int a = (int)((best_key - 1) >> 32), b = (int)((best_key - 1) & 0xffffffffu);
        int la = ts->tok[a].len;
        memcpy(scratch, ts->tok[a].s, la);
        memcpy(scratch + la, ts->tok[b].s, ts->tok[b].len);
        int t = tokset_add(ts, scratch, la + ts->tok[b].len);
        out[n_merges++] = (merge_t){a, b};
        /* Apply it to every word, left to right. */
        for (int i = 0; i < n_words; i++) {
            cword *w = &words[i];
            int k = 0;
            for (int j = 0; j < w->n; j++) {
                if (j + 1 < w->n && w->sym[j] == a && w->sym[j + 1] == b) {
                    w->sym[k++] = t;
                    j++;
                } else {
                    w->sym[k++] = w->sym[j];
                }
            }
            w->n = k;
        }
        /* Words that are one token can no longer contribute pairs. */
        int k = 0;
        for (int i = 0; i < n_words; i++) {
            if (words[i].n > 1) words[k++] = words[i];
            else free(words[i].sym);
        }
        n_words = k;
    }
    for (int i = 0; i < n_words; i++) free(words[i].sym);
    free(words), free(scratch);
    free(pc.keys), free(pc.counts), free(pc.used);
    return n_merges;
}

/* A token made of an optional leading space and ASCII letters. */
static int is_letter_token(const bstr *b) {
    int i = b->len > 0 && b->s[0] == ' ' ? 1 : 0;
    for (; i < b->len; i++) {
        unsigned char c = b->s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) return 0;
    }
    return b->len > 0;
}

/* Fills up to n_merges merges: letters appended to letter tokens, breadth first. */
static int filler_merges(tokset *ts, merge_t *out, int n_have, int n_merges) {
    static const char letters[] = "etaoinsrhldcumfpgwybvkxjqz";
    int *cand = xmalloc(sizeof(int) * (ts->n + (n_merges - n_have) + 1));
    int n_cand = 0;
    for (int i = 0; i < ts->n; i++)
        if (is_letter_token(&ts->tok[i])) cand[n_cand++] = i;
    unsigned char scratch[512];
    int start = 0;
    while (n_have < n_merges) {
        int end = n_cand, added = 0;
        for (int i = start; i < end && n_have < n_merges; i++) {
            int a = cand[i];
            if (ts->tok[a].len + 1 > (int)sizeof scratch) continue;
            for (int l = 0; letters[l] && n_have < n_merges; l++) {
                int b = (unsigned char)letters[l];
                if (tokset_find_concat(ts, a, b, scratch) >= 0) continue;
                int la = ts->tok[a].len;
                memcpy(scratch, ts->tok[a].s, la);
                scratch[la] = (unsigned char)letters[l];
                int t = tokset_add(ts, scratch, la + 1);
                out[n_have++] = (merge_t){a, b};
                cand[n_cand++] = t;
                added++;
            }
        }
        if (!added) break; /* cannot happen: the longest token plus a letter is always new */
        start = end;
    }
    free(cand);
    return n_have;
}

/* ---------------- specials ---------------- */

static int is_special_id(const tok_synth_spec *s, int id, int *tail_start) {
    if (id == s->bos_id) return 1;
    for (int i = 0; i < s->n_eos; i++)
        if (id == s->eos_ids[i]) return 1;
    return *tail_start >= 0 && id >= *tail_start;
}

/* Specials at the top of the vocabulary (Llama-3: 128000..128255) make the whole tail
 * special; returns its first id, or -1 for the "<s>"/"</s>" layout. */
static int special_tail(const tok_synth_spec *s) {
    int lo = s->bos_id;
    for (int i = 0; i < s->n_eos; i++) lo = s->eos_ids[i] < lo ? s->eos_ids[i] : lo;
    if (lo >= 256 && s->vocab_size - lo <= 1024) return lo;
    return -1;
}

static int validate(const tok_synth_spec *s) {
    if (s->vocab_size <= 0) return gptq_fail("tokenizer: vocab_size must be positive");
    if (s->n_eos < 1 || s->n_eos > TOK_SYNTH_MAX_EOS) return gptq_fail("tokenizer: need 1 to %d EOS ids", TOK_SYNTH_MAX_EOS);
    if (s->bos_id < 0 || s->bos_id >= s->vocab_size)
        return gptq_fail("tokenizer: bos_token_id %d is outside the vocabulary (vocab_size %d)", s->bos_id, s->vocab_size);
    for (int i = 0; i < s->n_eos; i++) {
        if (s->eos_ids[i] < 0 || s->eos_ids[i] >= s->vocab_size)
            return gptq_fail("tokenizer: eos_token_id %d is outside the vocabulary (vocab_size %d)", s->eos_ids[i],
                             s->vocab_size);
        for (int j = 0; j < i; j++)
            if (s->eos_ids[j] == s->eos_ids[i]) return gptq_fail("tokenizer: eos_token_id %d is repeated", s->eos_ids[i]);
    }
    int tail = special_tail(s), n_special = 0;
    for (int id = 0; id < s->vocab_size; id++) n_special += is_special_id(s, id, &tail);
    if (s->vocab_size < 256 + n_special)
        return gptq_fail("tokenizer: vocab_size %d is too small for a byte-level BPE vocabulary (256 byte tokens + %d "
                         "special tokens)",
                         s->vocab_size, n_special);
    return 0;
}

char *tokenizer_synth_special_name(const tok_synth_spec *s, int id) {
    int tail = special_tail(s);
    if (!is_special_id(s, id, &tail)) return NULL;
    char buf[64];
    if (id == s->bos_id && s->eos_ids[0] == s->bos_id) return xstrdup("<|endoftext|>"); /* GPT-2 style: one token */
    if (tail < 0) {
        if (id == s->bos_id) return xstrdup("<s>");
        if (id == s->eos_ids[0]) return xstrdup("</s>");
        int k = 0;
        while (s->eos_ids[k] != id) k++;
        snprintf(buf, sizeof buf, "<|eos_%d|>", k);
        return xstrdup(buf);
    }
    /* Llama-3.1 names when BOS, EOS open the tail; generic reserved names otherwise. */
    if (s->bos_id == tail && s->eos_ids[0] == tail + 1 && s->vocab_size - tail >= 11) {
        static const char *const llama3[] = {
            "<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
            "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eom_id|>", "<|eot_id|>", "<|python_tag|>",
        };
        int k = id - tail;
        if (k < 11) return xstrdup(llama3[k]);
        snprintf(buf, sizeof buf, "<|reserved_special_token_%d|>", k - 11 + 3);
        return xstrdup(buf);
    }
    if (id == s->bos_id) return xstrdup("<|begin_of_text|>");
    if (id == s->eos_ids[0]) return xstrdup("<|end_of_text|>");
    /* reserved ones numbered in id order among the tail's non-BOS/EOS ids */
    int k = 0;
    for (int j = tail; j < id; j++) {
        int named = j == s->bos_id;
        for (int e = 0; e < s->n_eos; e++) named |= j == s->eos_ids[e];
        k += !named;
    }
    int is_eos = 0;
    for (int e = 1; e < s->n_eos; e++) is_eos |= id == s->eos_ids[e];
    snprintf(buf, sizeof buf, is_eos ? "<|eos_%d|>" : "<|reserved_special_token_%d|>", k);
    return xstrdup(buf);
}

/* ---------------- JSON output ---------------- */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        while (b->n + n + 1 > b->cap) b->cap = b->cap ? 2 * b->cap : 1 << 16;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fmt(sbuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_utf8(sbuf *b, unsigned cp) {
    char u[4];
    if (cp < 0x80) {
        u[0] = (char)cp;
        sb_put(b, u, 1);
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        sb_put(b, u, 2);
    } else {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        sb_put(b, u, 3);
    }
}

/* GPT-2's ByteLevel alphabet: printable bytes stand for themselves, the others (0-32,
 * 127-160, 173) for 256, 257, ... in byte order. */
static void byte_level_table(unsigned cp[256]) {
    int k = 0;
    for (int c = 0; c < 256; c++) {
        int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255);
        cp[c] = printable ? (unsigned)c : (unsigned)(256 + k++);
    }
}

/* A JSON string literal of a token's ByteLevel text. */
static void sb_token(sbuf *b, const bstr *t, const unsigned cp[256]) {
    sb_put(b, "\"", 1);
    for (int i = 0; i < t->len; i++) {
        unsigned c = cp[t->s[i]];
        if (c == '"') sb_put(b, "\\\"", 2);
        else if (c == '\\') sb_put(b, "\\\\", 2);
        else sb_utf8(b, c);
    }
    sb_put(b, "\"", 1);
}

/* A JSON string literal of plain ASCII text (special names, regex). */
static void sb_ascii(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_put(b, "\\", 1);
        sb_put(b, s, 1);
    }
    sb_put(b, "\"", 1);
}

/* The Llama-3 pre-tokenizer split regex. */
static const char llama3_regex[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                   "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

char *tokenizer_synth_json(const tok_synth_spec *s) {
    if (validate(s) != 0) return NULL;
    int tail = special_tail(s), n_special = 0;
    for (int id = 0; id < s->vocab_size; id++) n_special += is_special_id(s, id, &tail);
    int n_regular = s->vocab_size - n_special, n_merges = n_regular - 256;

    tokset ts;
    tokset_init(&ts, s->vocab_size + 16);
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        tokset_add(&ts, &byte, 1);
    }
    char **special_names = xcalloc(s->vocab_size, sizeof(char *));
    for (int id = 0; id < s->vocab_size; id++) special_names[id] = tokenizer_synth_special_name(s, id);
    merge_t *merges = xmalloc(sizeof(merge_t) * (n_merges + 1));
    /* The specials' texts, spelled as bytes (they are printable ASCII, which ByteLevel maps
     * to itself): no regular token may have the same vocabulary string. */
    tokset specials;
    tokset_init(&specials, n_special + 16);
    for (int id = 0; id < s->vocab_size; id++)
        if (special_names[id]) tokset_add(&specials, (const unsigned char *)special_names[id], (int)strlen(special_names[id]));
    int got = learn_merges(&ts, merges, n_merges);
    got = filler_merges(&ts, merges, got, n_merges);
    /* A regular token spelled like a special would break the id map. Only letters are
     * appended by the filler and specials hold '<', '|', so this is a check, not a case. */
    for (int i = 0; i < ts.n; i++)
        if (tokset_find(&specials, ts.tok[i].s, ts.tok[i].len) >= 0) {
            gptq_fail("tokenizer: internal error: merge token collides with a special token");
            got = -1;
            break;
        }
    if (got != n_merges) {
        if (got >= 0) gptq_fail("tokenizer: could only make %d of %d merges", got, n_merges);
        for (int id = 0; id < s->vocab_size; id++) free(special_names[id]);
        free(special_names), free(merges);
        tokset_free(&ts), tokset_free(&specials);
        return NULL;
    }

    unsigned cp[256];
    byte_level_table(cp);
    sbuf b = {0};
    sb_str(&b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [");
    int first = 1;
    for (int id = 0; id < s->vocab_size; id++) {
        if (!special_names[id]) continue;
        sb_fmt(&b, "%s\n    {\"id\": %d, \"content\": ", first ? "" : ",", id);
        sb_ascii(&b, special_names[id]);
        sb_str(&b, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}");
        first = 0;
    }
    sb_str(&b, "\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
               "\"Split\", \"pattern\": {\"Regex\": ");
    sb_ascii(&b, llama3_regex);
    sb_str(&b, "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
               "\"trim_offsets\": true, \"use_regex\": false}]},\n");
    const char *bos = special_names[s->bos_id];
    sb_str(&b, "  \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": ");
    sb_ascii(&b, bos);
    sb_str(&b, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\": {\"id\": ");
    sb_ascii(&b, bos);
    sb_str(&b, ", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": ");
    sb_ascii(&b, bos);
    sb_str(&b, ", \"type_id\": 1}}, {\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}], \"special_tokens\": {");
    sb_ascii(&b, bos);
    sb_str(&b, ": {\"id\": ");
    sb_ascii(&b, bos);
    sb_fmt(&b, ", \"ids\": [%d], \"tokens\": [", s->bos_id);
    sb_ascii(&b, bos);
    sb_str(&b, "]}}},\n");
    sb_str(&b, "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": "
               "true},\n");
    sb_str(&b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
               "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
               "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {");
    int r = 0;
    for (int id = 0; id < s->vocab_size; id++) {
        sb_str(&b, id ? ",\n      " : "\n      ");
        if (special_names[id]) sb_ascii(&b, special_names[id]);
        else sb_token(&b, &ts.tok[r++], cp);
        sb_fmt(&b, ": %d", id);
    }
    sb_str(&b, "\n    },\n    \"merges\": [");
    for (int m = 0; m < n_merges; m++) {
        sb_str(&b, m ? ",\n      [" : "\n      [");
        sb_token(&b, &ts.tok[merges[m].a], cp);
        sb_str(&b, ", ");
        sb_token(&b, &ts.tok[merges[m].b], cp);
        sb_str(&b, "]");
    }
    sb_str(&b, "\n    ]\n  }\n}\n");

    for (int id = 0; id < s->vocab_size; id++) free(special_names[id]);
    free(special_names), free(merges);
    tokset_free(&ts), tokset_free(&specials);
    return b.p;
}


int tokenizer_synth_write(const char *dir, const tok_synth_spec *s) {
    char *json = tokenizer_synth_json(s);
    if (!json) return -1;
    int rc = fs_write_text(dir, "tokenizer.json", json);
    free(json);
    if (rc) return rc;
    char *bos = tokenizer_synth_special_name(s, s->bos_id), *eos = tokenizer_synth_special_name(s, s->eos_ids[0]);
    sbuf b = {0};
    sb_str(&b, "{\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"bos_token\": ");
    sb_ascii(&b, bos);
    sb_str(&b, ",\n  \"eos_token\": ");
    sb_ascii(&b, eos);
    sb_fmt(&b, ",\n  \"clean_up_tokenization_spaces\": false,\n  \"model_max_length\": %d,\n", s->model_max_length);
    sb_str(&b, "  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}\n");
    rc = fs_write_text(dir, "tokenizer_config.json", b.p);
    free(b.p), free(bos), free(eos);
    return rc;
}
