/*
 * ramflow - synthetic RAM images (see imagegen.h).
 *
 * DESIGN
 * The image is cut into 64 KiB regions (16 pages).  Each region draws a
 * dominant kind with the target weights (zero 20, text 30, code 25, data
 * 15, random 10) and a context (text style, pointer base, ...); each page
 * keeps the region's kind with probability 3/4, else draws its own kind
 * with the same weights, so the overall mix stays on target while kinds
 * come in runs as in real memory.  A region's generator is seeded from
 * (seed, region index) only, so threads can fill regions in any order and
 * the image depends on the seed alone.
 *
 * Speed (1 GiB in about a second on two threads) comes from drawing 64
 * random bits at a time and splitting them, copying words from 16-byte
 * padded slots with one fixed-size copy, and building each page in a
 * small stack buffer with slack so the inner loops need no bound checks.
 */
#include "tools/imagegen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ramflow/ramflow.h"

#define PAGE RF_PAGE_SIZE
#define REGION_PAGES 16u
#define SLACK 1024u /* room past the page end for the last unit emitted:
                       * a sentence is at most ~51 words of 16 bytes */

enum { K_ZERO, K_TEXT, K_CODE, K_DATA, K_RANDOM };

/* ---- random numbers ------------------------------------------------- */

typedef struct Rng {
    uint64_t s;
} Rng;

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* splitmix64: one add and two multiplies per 64 bits, good enough for
 * filling memory and for every decision below. */
static inline uint64_t rng_next(Rng *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

/* @return a number in [0, n), n <= 2^32, without a division. */
static inline uint32_t rng_below(Rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * n) >> 32);
}

static unsigned pick_kind(Rng *r)
{
    uint32_t u = rng_below(r, 100);
    return u < 20 ? K_ZERO : u < 50 ? K_TEXT : u < 75 ? K_CODE
         : u < 90 ? K_DATA : K_RANDOM;
}

/* ---- vocabulary ------------------------------------------------------ */

static const char *const words[] = {
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "was",
    "on", "with", "as", "be", "by", "at", "this", "not", "are", "from",
    "or", "have", "an", "they", "which", "one", "you", "were", "all",
    "her", "she", "there", "would", "their", "we", "him", "been", "has",
    "when", "who", "will", "more", "no", "if", "out", "so", "said", "what",
    "up", "its", "about", "into", "than", "them", "can", "only", "other",
    "new", "some", "could", "time", "these", "two", "may", "then", "do",
    "first", "any", "my", "now", "such", "like", "our", "over", "man",
    "me", "even", "most", "made", "after", "also", "did", "many", "before",
    "must", "through", "back", "years", "where", "much", "your", "way",
    "well", "down", "should", "because", "each", "just", "those", "people",
    "how", "too", "little", "state", "good", "very", "make", "world",
    "still", "own", "see", "men", "work", "long", "get", "here", "between",
    "both", "life", "being", "under", "never", "day", "same", "another",
    "know", "while", "last", "might", "us", "great", "old", "year", "off",
    "come", "since", "against", "go", "came", "right", "used", "take",
    "three", "house", "himself", "few", "without", "again", "place",
    "around", "however", "home", "small", "found", "thought", "went",
    "say", "part", "once", "general", "high", "upon", "school", "every",
    "does", "got", "united", "left", "number", "course", "war", "until",
    "always", "away", "something", "fact", "though", "water", "less",
    "public", "put", "think", "almost", "hand", "enough", "far", "took",
    "head", "yet", "government", "system", "better", "set", "told",
    "nothing", "night", "end", "why", "called", "didn't", "eyes", "find",
    "going", "look", "asked", "later", "knew", "point", "next", "program",
    "city", "business", "give", "group", "toward", "young", "days", "let",
    "room", "president", "side", "social", "present", "given", "several",
    "order", "national", "second", "possible", "rather", "per", "face",
    "among", "form", "important", "often", "things", "looked", "early",
    "white", "case", "john", "become", "large", "big", "need", "four",
    "within", "felt", "along", "children", "saw", "best", "church",
    "ever", "least", "power", "development", "light", "thing", "seemed",
    "family", "interest", "want", "members", "mind", "country", "area",
    "kernel", "error", "device", "buffer", "memory", "page", "driver",
    "request", "failed", "timeout", "network", "interface", "link",
    "started", "stopped", "service", "process", "thread", "client",
    "server", "connection", "session", "user", "root", "file", "path",
    "config", "value", "default", "enabled", "disabled", "module",
    "version", "status", "queue", "block", "cache", "index", "table",
    "update", "warning", "info", "debug", "received", "sent", "bytes",
    "packet", "address", "port", "local", "remote", "init", "loaded",
    "mount", "virtual", "cpu", "irq", "pci", "usb", "disk", "sda",
    "eth0", "systemd", "dbus", "libc", "lib", "usr", "bin", "etc", "var",
    "share", "include", "x86_64", "linux", "gnu", "python3", "java",
    "string", "object", "return", "null", "true", "false", "const",
    "struct", "static", "void", "int", "char", "unsigned", "size",
};

#define N_WORDS (sizeof(words) / sizeof(words[0]))
#define ZIPF_BITS 12
#define N_PHRASES 256
#define PHRASE_MAX 8

typedef struct Word16 {
    char s[16];
} Word16;

static Word16 vocab[N_WORDS];
static uint8_t vocab_len[N_WORDS];
static uint16_t zipf[1u << ZIPF_BITS]; /* uniform 12 bits -> word rank */
static uint16_t phrase[N_PHRASES][PHRASE_MAX];
static uint8_t phrase_len[N_PHRASES];
static pthread_once_t vocab_once = PTHREAD_ONCE_INIT;

/* Builds the padded word slots, a Zipf(1) rank table (rank r has weight
 * 1/(r+1), as word frequencies in real text), and a bank of phrases that
 * recur, giving the compressor the longer matches real text has. */
static void vocab_init(void)
{
    double total = 0;
    for (size_t i = 0; i < N_WORDS; i++) {
        size_t n = strlen(words[i]);
        memcpy(vocab[i].s, words[i], n < 15 ? n : 15);
        vocab_len[i] = (uint8_t)(n < 15 ? n : 15);
        total += 1.0 / (double)(i + 1);
    }
    double acc = 0;
    size_t w = 0;
    for (size_t j = 0; j < (1u << ZIPF_BITS); j++) {
        double target = ((double)j + 0.5) / (double)(1u << ZIPF_BITS);
        while (w + 1 < N_WORDS && acc + 1.0 / (double)(w + 1) / total
                                      < target) {
            acc += 1.0 / (double)(w + 1) / total;
            w++;
        }
        zipf[j] = (uint16_t)w;
    }
    Rng r = {0x5eed0f0fa11ull};
    for (size_t p = 0; p < N_PHRASES; p++) {
        phrase_len[p] = (uint8_t)(3 + rng_below(&r, PHRASE_MAX - 2));
        for (size_t k = 0; k < phrase_len[p]; k++) {
            phrase[p][k] = zipf[rng_below(&r, 1u << ZIPF_BITS)];
        }
    }
}

/* ---- text pages ------------------------------------------------------ */

enum { T_PROSE, T_LOG, T_CONFIG };

typedef struct TextCtx {
    unsigned style;
    uint32_t clock;    /* log timestamp, seconds, rises through a region */
    uint16_t host;     /* a word naming the host in log lines */
    uint16_t topic[4]; /* words a config region keeps returning to */
} TextCtx;

static inline size_t put_word(char *b, size_t p, unsigned w)
{
    memcpy(b + p, vocab[w].s, 16);
    return p + vocab_len[w];
}

/* Writes v in decimal, zero-padded to at least `width` digits. */
static size_t put_uint(char *b, size_t p, uint32_t v, unsigned width)
{
    char tmp[12];
    unsigned n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < width) {
        tmp[n++] = '0';
    }
    while (n) {
        b[p++] = tmp[--n];
    }
    return p;
}

/* A sentence of 4..15 words (a phrase now and then), at most ~260 bytes. */
static size_t emit_sentence(char *b, size_t p, Rng *r)
{
    uint64_t bits = rng_next(r);
    unsigned n = 4 + (bits & 15) % 12;
    bits >>= 4;
    size_t start = p;
    for (unsigned i = 0; i < n; i++) {
        if (i % 4 == 0) {
            bits = rng_next(r);
        }
        unsigned z = bits & ((1u << ZIPF_BITS) - 1);
        bits >>= ZIPF_BITS;
        if ((bits & 7) == 0 && i + PHRASE_MAX / 2 < n) {
            unsigned ph = (unsigned)(bits >> 3) % N_PHRASES;
            for (unsigned k = 0; k < phrase_len[ph]; k++) {
                p = put_word(b, p, phrase[ph][k]);
                b[p++] = ' ';
            }
            i += phrase_len[ph] / 2;
        } else if ((bits & 63) == 1) {
            p = put_uint(b, p, (uint32_t)(bits >> 6) % 2000, 1);
            b[p++] = ' ';
        } else {
            p = put_word(b, p, zipf[z]);
            b[p++] = (bits & 15) == 2 ? ',' : ' ';
            if (b[p - 1] == ',') {
                b[p++] = ' ';
            }
        }
        bits >>= 4;
    }
    if (b[start] >= 'a' && b[start] <= 'z') {
        b[start] = (char)(b[start] - 'a' + 'A');
    }
    b[p - 1] = '.';
    b[p++] = (bits & 7) == 0 ? '\n' : ' ';
    return p;
}

/* "Mar 11 12:34:56 host word[1234]: words...\n" */
static size_t emit_log_line(char *b, size_t p, Rng *r, TextCtx *t)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    uint64_t bits = rng_next(r);
    t->clock += (uint32_t)(bits & 3);
    bits >>= 2;
    uint32_t day = t->clock / 86400, sec = t->clock % 86400;
    memcpy(b + p, months + 3 * (day / 28 % 12), 3);
    p += 3;
    b[p++] = ' ';
    p = put_uint(b, p, day % 28 + 1, 2);
    b[p++] = ' ';
    p = put_uint(b, p, sec / 3600, 2);
    b[p++] = ':';
    p = put_uint(b, p, sec / 60 % 60, 2);
    b[p++] = ':';
    p = put_uint(b, p, sec % 60, 2);
    b[p++] = ' ';
    p = put_word(b, p, t->host);
    b[p++] = ' ';
    p = put_word(b, p, t->topic[bits & 3]);
    bits >>= 2;
    b[p++] = '[';
    p = put_uint(b, p, 300 + (uint32_t)(bits & 0x3ff) % 8 * 97, 1);
    bits >>= 10;
    b[p++] = ']';
    b[p++] = ':';
    b[p++] = ' ';
    /* The message: one of the region's templates (a phrase), then a few
     * words or a number, as programs log a few messages over and over. */
    unsigned ph = t->topic[bits & 3] % N_PHRASES;
    bits >>= 2;
    for (unsigned k = 0; k < phrase_len[ph]; k++) {
        p = put_word(b, p, phrase[ph][k]);
        b[p++] = ' ';
    }
    if (bits & 1) {
        p = put_uint(b, p, (uint32_t)(bits >> 1 & 0xffff), 1);
        b[p++] = ' ';
    } else {
        p = put_word(b, p, zipf[bits >> 1 & 0xfff]);
        b[p++] = ' ';
    }
    b[p - 1] = '\n';
    return p;
}

/* "word.word_word = 1234\n" or "/usr/lib/word/word.so.3\n" */
static size_t emit_config_line(char *b, size_t p, Rng *r, TextCtx *t)
{
    uint64_t bits = rng_next(r);
    if (bits & 1) {
        b[p++] = '/';
        p = put_word(b, p, t->topic[(bits >> 1) & 3]);
        b[p++] = '/';
        p = put_word(b, p, zipf[(bits >> 3) & 0xfff]);
        b[p++] = '/';
        p = put_word(b, p, zipf[(bits >> 15) & 0xfff]);
        memcpy(b + p, ".so.", 4);
        p = put_uint(b, p + 4, (uint32_t)(bits >> 27) & 7, 1);
    } else {
        p = put_word(b, p, t->topic[(bits >> 1) & 3]);
        b[p++] = '.';
        p = put_word(b, p, zipf[(bits >> 3) & 0xfff]);
        b[p++] = '_';
        p = put_word(b, p, zipf[(bits >> 15) & 0xfff]);
        memcpy(b + p, " = ", 3);
        p += 3;
        if ((bits >> 27) & 1) {
            p = put_uint(b, p, (uint32_t)(bits >> 28) & 0xffff, 1);
        } else {
            p = put_word(b, p, zipf[(bits >> 28) & 0xfff]);
        }
    }
    b[p++] = '\n';
    return p;
}

static void gen_text(uint8_t *page, Rng *r, TextCtx *t)
{
    char buf[PAGE + SLACK];
    size_t p = 0;
    while (p < PAGE) {
        switch (t->style) {
        case T_LOG:
            p = emit_log_line(buf, p, r, t);
            break;
        case T_CONFIG:
            p = emit_config_line(buf, p, r, t);
            break;
        default:
            p = emit_sentence(buf, p, r);
            break;
        }
    }
    memcpy(page, buf, PAGE);
}

/* ---- code pages ------------------------------------------------------ */

/* An instruction template: its bytes, and where and how its immediate is
 * drawn.  The immediate is v = add + (bits & mask) * mul, written as 4
 * bytes at imm_at whatever its real width: bytes past the instruction are
 * overwritten by the next one.  No branch per kind keeps the loop fast. */
typedef struct Insn {
    uint8_t op[7];
    uint8_t len, imm_at;
    uint32_t add, mask, mul;
} Insn;

#define DISP8 0xf8, 7, (uint32_t)-8   /* [reg-8] .. [reg-64] */
#define REL8 0, 0x3f, 1               /* short forward jump */
#define IMM8 0, 7, 8                  /* small multiple of 8 */
#define REL32 (uint32_t)-0x80000, 0xfffff, 1 /* call within +-512 KiB */
#define IMM32 0, 0xff, 1              /* small constant */
#define RIP32 0x200000, 0x3ffff, 1    /* data a few MiB away */
#define NOIMM 0, 0, 0

/* Common x86-64 encodings; calls appear twice to weigh them up. */
static const Insn insns[] = {
    {{0x48, 0x8b, 0x45}, 4, 3, DISP8},       /* mov rax,[rbp-d8] */
    {{0x48, 0x89, 0x45}, 4, 3, DISP8},       /* mov [rbp-d8],rax */
    {{0x48, 0x8b, 0x7d}, 4, 3, DISP8},       /* mov rdi,[rbp-d8] */
    {{0x8b, 0x45}, 3, 2, DISP8},             /* mov eax,[rbp-d8] */
    {{0x89, 0x45}, 3, 2, DISP8},             /* mov [rbp-d8],eax */
    {{0x48, 0x89, 0xc7}, 3, 3, NOIMM},       /* mov rdi,rax */
    {{0x48, 0x89, 0xde}, 3, 3, NOIMM},       /* mov rsi,rbx */
    {{0x4c, 0x89, 0xe7}, 3, 3, NOIMM},       /* mov rdi,r12 */
    {{0xe8}, 5, 1, REL32},                   /* call rel32 */
    {{0xe8}, 5, 1, REL32},                   /* call rel32 */
    {{0xe9}, 5, 1, REL32},                   /* jmp rel32 */
    {{0x85, 0xc0}, 2, 2, NOIMM},             /* test eax,eax */
    {{0x48, 0x85, 0xc0}, 3, 3, NOIMM},       /* test rax,rax */
    {{0x74}, 2, 1, REL8},                    /* je rel8 */
    {{0x75}, 2, 1, REL8},                    /* jne rel8 */
    {{0xeb}, 2, 1, REL8},                    /* jmp rel8 */
    {{0x0f, 0x84}, 6, 2, REL32},             /* je rel32 */
    {{0x31, 0xc0}, 2, 2, NOIMM},             /* xor eax,eax */
    {{0xb8}, 5, 1, IMM32},                   /* mov eax,imm32 */
    {{0xbe}, 5, 1, IMM32},                   /* mov esi,imm32 */
    {{0x48, 0x8d, 0x3d}, 7, 3, RIP32},       /* lea rdi,[rip+d32] */
    {{0x48, 0x8b, 0x05}, 7, 3, RIP32},       /* mov rax,[rip+d32] */
    {{0x48, 0x83, 0xc4}, 4, 3, IMM8},        /* add rsp,imm8 */
    {{0x83, 0xf8}, 3, 2, IMM8},              /* cmp eax,imm8 */
    {{0x48, 0x83, 0xc0}, 4, 3, IMM8},        /* add rax,imm8 */
    {{0x48, 0x8b, 0x43}, 4, 3, DISP8},       /* mov rax,[rbx+d8] */
    {{0x48, 0x89, 0x43}, 4, 3, DISP8},       /* mov [rbx+d8],rax */
    {{0x53}, 1, 1, NOIMM},                   /* push rbx */
    {{0x5b}, 1, 1, NOIMM},                   /* pop rbx */
    {{0x41, 0x54}, 2, 2, NOIMM},             /* push r12 */
    {{0x41, 0x5c}, 2, 2, NOIMM},             /* pop r12 */
    {{0x0f, 0xb6, 0xc0}, 3, 3, NOIMM},       /* movzx eax,al */
    {{0x48, 0x63, 0xd0}, 3, 3, NOIMM},       /* movsxd rdx,eax */
};

#define N_INSNS (sizeof(insns) / sizeof(insns[0]))

typedef struct CodeCtx {
    uint64_t base;   /* pointer base: shared high bytes within a region */
    unsigned stride; /* struct size of a struct/pointer page */
    unsigned layout; /* 0..2: code, 3: pointer table, 4: struct array */
} CodeCtx;

/* One function: prologue, body of 4..42 instructions, epilogue, padding
 * to 16 bytes: at most ~330 bytes past p, within SLACK. */
static size_t emit_function(uint8_t *b, size_t p, Rng *r)
{
    static const uint8_t prologue[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0x48,
                                       0x89, 0xe5, 0x48, 0x83, 0xec};
    memcpy(b + p, prologue, sizeof(prologue));
    p += sizeof(prologue);
    uint64_t bits = rng_next(r);
    b[p++] = (uint8_t)(16 + 8 * (bits & 7));
    unsigned n = 4 + (unsigned)(bits >> 3 & 31) + (unsigned)(bits >> 8 & 7);
    for (unsigned i = 0; i < n; i++) {
        if (i % 2 == 0) {
            bits = rng_next(r);
        } else {
            bits >>= 32;
        }
        const Insn *in = &insns[(bits & 0xff) % N_INSNS];
        uint32_t v = in->add + (uint32_t)(bits >> 8 & in->mask) * in->mul;
        memcpy(b + p, in->op, 7);
        memcpy(b + p + in->imm_at, &v, 4);
        p += in->len;
    }
    b[p++] = 0xc9; /* leave */
    b[p++] = 0xc3; /* ret */
    while (p % 16) {
        b[p++] = 0xcc; /* int3 padding */
    }
    return p;
}

static void gen_code(uint8_t *page, Rng *r, const CodeCtx *c)
{
    uint8_t buf[PAGE + SLACK];
    size_t p = 0;
    if (c->layout <= 2) {
        while (p < PAGE) {
            p = emit_function(buf, p, r);
        }
        memcpy(page, buf, PAGE);
        return;
    }
    uint64_t *q = (uint64_t *)(void *)buf;
    size_t nq = PAGE / 8;
    if (c->layout == 3) {
        /* Pointer table: rising pointers into one mapping, some NULL. */
        uint64_t ptr = c->base + 16 * rng_below(r, 4096);
        for (size_t i = 0; i < nq; i++) {
            uint64_t bits = rng_next(r);
            ptr += 16 * (1 + (bits & 15));
            q[i] = (bits >> 4 & 15) == 0 ? 0 : ptr;
        }
    } else {
        /* Array of small structs: two pointers, small int, flags, pad. */
        size_t per = c->stride / 8;
        for (size_t i = 0; i + per <= nq; i += per) {
            uint64_t bits = rng_next(r);
            q[i] = c->base + 64 * (bits & 0xffff);
            q[i + 1] = (bits >> 16 & 3) ? c->base + 64 * (bits >> 18 & 0xffff)
                                        : 0;
            for (size_t k = 2; k < per; k++) {
                q[k + i] = k == 2 ? ((bits >> 34 & 0x3f) | (uint64_t)0x1 << 32)
                         : k == 3 ? (bits >> 40 & 0x7)
                                  : 0;
            }
        }
        memset(q + nq - nq % per, 0, nq % per * 8);
    }
    memcpy(page, buf, PAGE);
}

/* ---- structured data pages ------------------------------------------- */

static void gen_data(uint8_t *page, Rng *r)
{
    uint64_t q[PAGE / 8];
    uint32_t *d = (uint32_t *)(void *)q;
    uint64_t bits = rng_next(r);
    switch (bits & 3) {
    case 0: { /* page table: rising frame numbers, flags, holes */
        uint64_t pfn = (bits >> 8) & 0xfffff;
        uint64_t flags = (bits >> 4 & 1) ? 0x8000000000000067ull : 0x63;
        for (size_t i = 0; i < PAGE / 8; i++) {
            uint64_t b = rng_next(r);
            pfn += (b & 31) == 0 ? (b >> 5 & 0xfff) : 1;
            q[i] = (b >> 20 & 15) == 0 ? 0 : pfn << 12 | flags;
        }
        break;
    }
    case 1: { /* counters: a random walk of small integers */
        uint32_t v = (uint32_t)(bits >> 8) & 0xfff;
        for (size_t i = 0; i < PAGE / 4; i += 8) {
            uint64_t b = rng_next(r);
            for (size_t k = 0; k < 8; k++) {
                v += (uint32_t)(b >> (8 * k) & 7) - 3;
                d[i + k] = v & 0xffff;
            }
        }
        break;
    }
    case 2: { /* bitmap: runs of set and clear bytes with noise */
        uint8_t *c = (uint8_t *)q;
        size_t i = 0;
        while (i < PAGE) {
            uint64_t b = rng_next(r);
            size_t run = 8 + (b & 0xff);
            uint8_t v = (b >> 8 & 1) ? 0xff : 0x00;
            if ((b >> 9 & 3) == 0) {
                v = (uint8_t)(b >> 16);
            }
            for (size_t k = 0; k < run && i < PAGE; k++) {
                c[i++] = v;
            }
        }
        break;
    }
    default: { /* a partly used slab: small records, then zeros */
        size_t used = 64 * (1 + rng_below(r, PAGE / 64 - 1)) / 8;
        for (size_t i = 0; i < used; i++) {
            uint64_t b = rng_next(r);
            q[i] = (i & 1) ? (b & 0x3ff) : (b & 0xffff) << 16;
        }
        memset(q + used, 0, PAGE - used * 8);
        break;
    }
    }
    memcpy(page, q, PAGE);
}

static void gen_random(uint8_t *page, Rng *r)
{
    uint64_t q[PAGE / 8];
    for (size_t i = 0; i < PAGE / 8; i++) {
        q[i] = rng_next(r);
    }
    memcpy(page, q, PAGE);
}

/* ---- regions and threads --------------------------------------------- */

static void gen_region(uint8_t *dst, uint32_t npages, uint64_t seed,
                       uint64_t region)
{
    Rng r = {mix64(seed ^ mix64(region + 0x2545f4914f6cdd1dull))};
    unsigned kind = pick_kind(&r);
    TextCtx t = {.style = rng_below(&r, 10)};
    t.style = t.style < 6 ? T_PROSE : t.style < 8 ? T_LOG : T_CONFIG;
    t.clock = rng_below(&r, 86400u * 300);
    t.host = zipf[rng_below(&r, 1u << ZIPF_BITS)];
    for (size_t i = 0; i < 4; i++) {
        t.topic[i] = (uint16_t)rng_below(&r, N_WORDS);
    }
    static const unsigned strides[] = {24, 32, 48, 64, 96};
    CodeCtx c = {.layout = rng_below(&r, 5),
                 .stride = strides[rng_below(&r, 5)]};
    uint64_t b = rng_next(&r);
    c.base = (b & 1) ? 0x00007f0000000000ull | (b >> 8 & 0xffffff) << 16
                     : 0xffff888000000000ull | (b >> 8 & 0xffffff) << 12;

    for (uint32_t i = 0; i < npages; i++) {
        uint8_t *page = dst + (size_t)i * PAGE;
        unsigned k = rng_below(&r, 4) ? kind : pick_kind(&r);
        switch (k) {
        case K_ZERO:
            memset(page, 0, PAGE);
            break;
        case K_TEXT:
            gen_text(page, &r, &t);
            break;
        case K_CODE:
            gen_code(page, &r, &c);
            break;
        case K_DATA:
            gen_data(page, &r);
            break;
        default:
            gen_random(page, &r);
            break;
        }
    }
}

typedef struct GenJob {
    uint8_t *dst;
    uint64_t npages; /* pages of the whole image */
    uint64_t seed;
    uint64_t first, last; /* regions [first, last) */
} GenJob;

static void *gen_thread(void *arg)
{
    GenJob *j = arg;
    for (uint64_t reg = j->first; reg < j->last; reg++) {
        uint64_t p0 = reg * REGION_PAGES;
        uint64_t n = j->npages - p0 < REGION_PAGES ? j->npages - p0
                                                   : REGION_PAGES;
        gen_region(j->dst + p0 * PAGE, (uint32_t)n, j->seed, reg);
    }
    return NULL;
}

#define MAX_THREADS 64

bool rf_image_generate(uint8_t *dst, uint64_t size, uint64_t seed,
                       unsigned threads, RfError **errp)
{
    if (size % PAGE != 0 || (size && !dst)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "image size %llu is not a multiple of %u bytes "
                     "(or no buffer)", (unsigned long long)size, PAGE);
        return false;
    }
    pthread_once(&vocab_once, vocab_init);
    uint64_t npages = size / PAGE;
    uint64_t nregions = (npages + REGION_PAGES - 1) / REGION_PAGES;
    if (threads == 0) {
        threads = 1;
    }
    if (threads > MAX_THREADS) {
        threads = MAX_THREADS;
    }
    if (threads > nregions) {
        threads = nregions ? (unsigned)nregions : 1;
    }
    GenJob jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    for (unsigned i = 0; i < threads; i++) {
        jobs[i] = (GenJob){.dst = dst, .npages = npages, .seed = seed,
                           .first = nregions * i / threads,
                           .last = nregions * (i + 1) / threads};
        /* Thread 0's share runs here; a thread that cannot start has its
         * share run here too, so the image is the same either way. */
        if (i > 0) {
            started[i] = pthread_create(&tid[i], NULL, gen_thread,
                                        &jobs[i]) == 0;
        }
    }
    gen_thread(&jobs[0]);
    for (unsigned i = 1; i < threads; i++) {
        if (started[i]) {
            pthread_join(tid[i], NULL);
        } else {
            gen_thread(&jobs[i]);
        }
    }
    return true;
}

/* ---- images from files ----------------------------------------------- */

/* Reads up to `room` bytes of the file at path into dst.
 * @return the bytes read, or -1 with an error naming the file. */
static int64_t read_file_into(const char *path, uint8_t *dst,
                              uint64_t room, RfError **errp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rf_error_set(errp, RF_ERR_IO, "image file %s: cannot open: %s",
                     path, strerror(errno));
        return -1;
    }
    uint64_t got = 0;
    while (got < room) {
        size_t chunk = room - got < (1u << 30) ? room - got : (1u << 30);
        ssize_t n = read(fd, dst + got, chunk);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            rf_error_set(errp, RF_ERR_IO, "image file %s: read failed: %s",
                         path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0) {
            break;
        }
        got += (uint64_t)n;
    }
    close(fd);
    return (int64_t)got;
}

bool rf_image_fill_from_files(uint8_t *dst, uint64_t size,
                              const char *const *paths, unsigned n,
                              RfError **errp)
{
    if (size % PAGE != 0 || (size && !dst)) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "image size %llu is not a multiple of %u bytes "
                     "(or no buffer)", (unsigned long long)size, PAGE);
        return false;
    }
    if (n == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "image files: none given");
        return false;
    }
    /* Read each file once, in order, straight into dst... */
    uint64_t filled = 0;
    for (unsigned i = 0; i < n && filled < size; i++) {
        int64_t got = read_file_into(paths[i], dst + filled, size - filled,
                                     errp);
        if (got < 0) {
            return false;
        }
        filled += (uint64_t)got;
    }
    if (filled == 0 && size > 0) {
        rf_error_set(errp, RF_ERR_PARAM,
                     "image files: all %u files are empty", n);
        return false;
    }
    /* ...then repeat what was read until dst is full. */
    uint64_t period = filled;
    while (filled < size) {
        uint64_t chunk = size - filled < period ? size - filled : period;
        memcpy(dst + filled, dst + filled - period, chunk);
        filled += chunk;
    }
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

bool rf_image_fill_from_path(uint8_t *dst, uint64_t size, const char *path,
                             RfError **errp)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        rf_error_set(errp, RF_ERR_IO, "fill '%s': %s", path,
                     strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        const char *one = path;
        return rf_image_fill_from_files(dst, size, &one, 1, errp);
    }
    DIR *d = opendir(path);
    if (!d) {
        rf_error_set(errp, RF_ERR_IO, "fill folder '%s': %s", path,
                     strerror(errno));
        return false;
    }
    char **names = NULL;
    unsigned n = 0, cap = 0;
    bool ok = false;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') {
            continue;
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *full = malloc(len);
        if (!full) {
            goto oom;
        }
        snprintf(full, len, "%s/%s", path, e->d_name);
        if (stat(full, &st) < 0 || !S_ISREG(st.st_mode)) {
            free(full);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nn = realloc(names, cap * sizeof(*names));
            if (!nn) {
                free(full);
                goto oom;
            }
            names = nn;
        }
        names[n++] = full;
    }
    if (n == 0) {
        rf_error_set(errp, RF_ERR_PARAM, "fill folder '%s' has no regular "
                     "files", path);
        goto out;
    }
    qsort(names, n, sizeof(*names), cmp_str);
    ok = rf_image_fill_from_files(dst, size, (const char *const *)names, n,
                                  errp);
    goto out;
oom:
    rf_error_set(errp, RF_ERR_GENERIC, "fill folder '%s': out of memory",
                 path);
out:
    for (unsigned i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    closedir(d);
    return ok;
}
