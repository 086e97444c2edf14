/* The allocation history in C: who allocated, freed and last tagged memory, recorded at
   the program's allocator calls without a Python frame (machine/allochist.py is the
   reference, and says what is recorded; tests/test_alloc_history.py keeps them equal).

   Included by _native.c (one translation unit: the hooks read registers and guest memory
   through the same static helpers as the tag check).

   Unicorn calls `ah_on_code` for the hooked addresses only (bounded UC_HOOK_CODE hooks,
   one per allocator entry point and one on the return trampoline). At an entry it reads
   the arguments and a frame-pointer backtrace; a free is recorded there, a call that
   returns a pointer is remembered per thread and its return address (x30) replaced by the
   trampoline, whose hook records the result and puts the real return address back before
   the trampoline's RET runs — uretprobes' method, without a breakpoint. */

#define AH_FRAMES 10             /* pc, lr, then up to 8 return addresses of the x29 chain */
#define AH_PENDING 64            /* threads inside an allocator call at once */
#define AH_ENTRIES 16
#define AH_TAG_WRITE 16          /* allochist.py's ops: 1..9 the allocator's functions */
#define AH_OP_FREE 4
#define AH_OP_REALLOC 3
#define AH_OP_CALLOC 2
#define AH_OP_POSIX_MEMALIGN 6
#define AH_OP_VALLOC 8
#define AH_OP_PVALLOC 9
#define AH_KIND_ALLOC 1
#define AH_KIND_FREE 2
#define AH_KIND_TAGS 3

struct ah_event {                /* allochist.py's Event, field for field */
    uint64_t seq;
    uint32_t op, kind, tid, pad;
    uint64_t ptr, size;
    uint64_t frames[AH_FRAMES];
};

struct ah_ring {
    struct ah_event *ev;
    uint32_t cap, size, next, count;   /* size: allocated slots, grown up to cap */
};

struct ah_pending {
    uint32_t tid, op;            /* op 0: slot free */
    uint64_t lr, sp, a0, a1, a2;
    uint64_t frames[AH_FRAMES];
};

struct ah_hist {
    struct ah_ring calls, tags;
    uint64_t seq;
    struct ah_pending pending[AH_PENDING];
    uint64_t entries[AH_ENTRIES];
    uint32_t ops[AH_ENTRIES];
    int nentries;
    uint64_t trampoline;
};

static void ring_init(struct ah_ring *r, uint32_t cap) {
    memset(r, 0, sizeof *r);
    r->cap = cap;
}

struct ah_hist *ah_new(uint32_t calls, uint32_t tags) {
    struct ah_hist *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    ring_init(&h->calls, calls);
    ring_init(&h->tags, tags);
    return h;
}

void ah_free(struct ah_hist *h) {
    if (h == NULL)
        return;
    free(h->calls.ev);
    free(h->tags.ev);
    free(h);
}

static int ring_copy(struct ah_ring *to, const struct ah_ring *from) {
    *to = *from;
    to->ev = NULL;
    if (from->size == 0)
        return 1;
    to->ev = malloc(from->size * sizeof *from->ev);
    if (to->ev == NULL)
        return 0;
    memcpy(to->ev, from->ev, from->size * sizeof *from->ev);
    return 1;
}

/* fork(): the child's history starts as its parent's (no call is in progress in it). */
struct ah_hist *ah_clone(const struct ah_hist *h) {
    struct ah_hist *n = malloc(sizeof *n);
    if (n == NULL)
        return NULL;
    *n = *h;
    memset(n->pending, 0, sizeof n->pending);
    if (!ring_copy(&n->calls, &h->calls)) {
        free(n);
        return NULL;
    }
    if (!ring_copy(&n->tags, &h->tags)) {
        free(n->calls.ev);
        free(n);
        return NULL;
    }
    return n;
}

/* The allocator's entry points in this process, and its return trampoline. */
int ah_set_table(struct ah_hist *h, int n, const uint64_t *addrs, const uint32_t *ops, uint64_t trampoline) {
    if (n > AH_ENTRIES)
        return -1;
    for (int i = 0; i < n; i++) {
        h->entries[i] = addrs[i];
        h->ops[i] = ops[i];
    }
    h->nentries = n;
    h->trampoline = trampoline;
    return 0;
}

/* The next slot of a ring, oldest overwritten once it holds `cap`; NULL when out of memory. */
static struct ah_event *ring_push(struct ah_ring *r) {
    if (r->cap == 0)
        return NULL;
    if (r->next == r->size && r->size < r->cap) {
        uint32_t grown = r->size ? r->size * 2 : 256;
        if (grown > r->cap)
            grown = r->cap;
        struct ah_event *ev = realloc(r->ev, grown * sizeof *ev);
        if (ev == NULL)
            return NULL;
        r->ev = ev;
        r->size = grown;
    }
    struct ah_event *e = &r->ev[r->next];
    r->next = (r->next + 1) % r->cap;
    if (r->count < r->cap)
        r->count++;
    return e;
}

static struct ah_event *ring_last(struct ah_ring *r) {
    return r->count ? &r->ev[(r->next + r->cap - 1) % r->cap] : NULL;
}

unsigned ah_count(struct ah_hist *h, int tags) { return tags ? h->tags.count : h->calls.count; }

/* Event i of a ring, oldest first. */
int ah_get(struct ah_hist *h, int tags, unsigned i, struct ah_event *out) {
    struct ah_ring *r = tags ? &h->tags : &h->calls;
    if (i >= r->count)
        return -1;
    *out = r->ev[(r->next + r->cap - r->count + i) % r->cap];
    return 0;
}

static int ah_read_u64(struct mte_ctx *c, uint64_t va, uint64_t *out) {
    int tagged, ok;
    if (va & 7)
        return 0;
    uint64_t pa = xlate(c, va, UC_MEM_READ, &tagged, &ok);
    const uint8_t *host = ok ? host_of(c, pa) : NULL;
    if (host == NULL)
        return 0;
    memcpy(out, host, 8);
    return 1;
}

/* pc, lr, then the return addresses of the AAPCS64 frame records from x29 (allochist.py's
   backtrace(): the same stopping rules). */
static void ah_backtrace(struct mte_ctx *c, void *uc, uint64_t pc, uint64_t lr, uint64_t *frames) {
    memset(frames, 0, AH_FRAMES * sizeof *frames);
    frames[0] = pc;
    frames[1] = lr & ((1ULL << 56) - 1);
    uint64_t fp = reg_get(c, uc, 29);
    for (int i = 2; i < AH_FRAMES && fp && !(fp & 7); i++) {
        uint64_t next, ret;
        if (!ah_read_u64(c, fp, &next) || !ah_read_u64(c, fp + 8, &ret) || !ret)
            break;
        frames[i] = ret & ((1ULL << 56) - 1);
        if (next <= fp)
            break;
        fp = next;
    }
}

static void ah_record(struct ah_hist *h, struct ah_ring *r, uint32_t op, uint32_t kind, uint32_t tid, uint64_t ptr,
                      uint64_t size, const uint64_t *frames) {
    struct ah_event *e = ring_push(r);
    if (e == NULL)
        return;
    e->seq = ++h->seq;
    e->op = op;
    e->kind = kind;
    e->tid = tid;
    e->pad = 0;
    e->ptr = ptr;
    e->size = size;
    memcpy(e->frames, frames, sizeof e->frames);
}

static struct ah_pending *ah_pending_of(struct ah_hist *h, uint32_t tid) {
    for (int i = 0; i < AH_PENDING; i++)
        if (h->pending[i].op && h->pending[i].tid == tid)
            return &h->pending[i];
    return NULL;
}

static uint64_t ah_size(uint32_t op, uint64_t a0, uint64_t a1, uint64_t a2) {
    switch (op) {
    case AH_OP_CALLOC: return a0 * a1;
    case AH_OP_REALLOC: return a1;
    case AH_OP_POSIX_MEMALIGN: return a2;
    case AH_OP_VALLOC: case AH_OP_PVALLOC: return op == AH_OP_PVALLOC ? (a0 + 4095) & ~4095ULL : a0;
    case 1: return a0;
    default: return a1;          /* memalign, aligned_alloc: (alignment, size) */
    }
}

static void ah_returned(struct mte_ctx *c, void *uc, struct ah_hist *h, struct ah_pending *p) {
    uint64_t ret = reg_get(c, uc, 0);
    reg_set(c, 30, p->lr);
    if (p->op == AH_OP_POSIX_MEMALIGN) {
        uint64_t ptr;
        if (ret != 0 || !ah_read_u64(c, p->a0, &ptr))
            ptr = 0;
        ret = ptr;
    }
    if (p->op == AH_OP_REALLOC && p->a0 && (ret || p->a1 == 0))
        ah_record(h, &h->calls, p->op, AH_KIND_FREE, p->tid, p->a0, 0, p->frames);
    if (ret && p->op != AH_OP_FREE)
        ah_record(h, &h->calls, p->op, AH_KIND_ALLOC, p->tid, ret, ah_size(p->op, p->a0, p->a1, p->a2), p->frames);
    p->op = 0;
}

static void ah_entered(struct mte_ctx *c, void *uc, struct ah_hist *h, uint32_t op, uint64_t pc) {
    uint32_t tid = c->ah_tid;
    uint64_t sp = reg_get(c, uc, R_SP);
    struct ah_pending *outer = ah_pending_of(h, tid);
    /* Inside another allocator call (realloc's malloc), deeper on the stack or tail-called
       from it (realloc(NULL, n) jumps to malloc: x30 is still the trampoline): its caller's. */
    if (outer != NULL && (sp < outer->sp || reg_get(c, uc, 30) == h->trampoline))
        return;
    if (outer != NULL)
        outer->op = 0;           /* that call was left without returning (longjmp): forgotten */
    uint64_t frames[AH_FRAMES];
    ah_backtrace(c, uc, pc, reg_get(c, uc, 30), frames);
    if (op == AH_OP_FREE && reg_get(c, uc, 0))  /* recorded now; its return only ends the call */
        ah_record(h, &h->calls, op, AH_KIND_FREE, tid, reg_get(c, uc, 0), 0, frames);
    if (h->trampoline == 0)
        return;
    for (int i = 0; i < AH_PENDING; i++) {
        struct ah_pending *p = &h->pending[i];
        if (p->op == 0) {
            p->tid = tid;
            p->op = op;
            p->lr = reg_get(c, uc, 30);
            p->sp = sp;
            p->a0 = reg_get(c, uc, 0);
            p->a1 = reg_get(c, uc, 1);
            p->a2 = reg_get(c, uc, 2);
            memcpy(p->frames, frames, sizeof frames);
            reg_set(c, 30, h->trampoline);
            return;
        }
    }
}

/* The engine's code hook on every allocator entry and on the trampoline (uc_cb_hookcode_t).
   Another process may run code at an address hooked for this one: only this history's
   addresses count. */
void ah_on_code(void *uc, uint64_t address, uint32_t size, void *user_data) {
    (void)size;
    struct mte_ctx *c = user_data;
    struct ah_hist *h = c->ah;
    if (h == NULL)
        return;
    c->rv_loaded = c->rv_dirty = 0;
    if (address == h->trampoline) {
        struct ah_pending *p = ah_pending_of(h, c->ah_tid);
        if (p != NULL)
            ah_returned(c, uc, h, p);
    } else {
        for (int i = 0; i < h->nentries; i++)
            if (h->entries[i] == address) {
                ah_entered(c, uc, h, h->ops[i], address);
                break;
            }
    }
    regs_write_back(c, uc);
}

/* A tag store (STG, ST2G, STZG, STZ2G, STGP, DC G(Z)VA) to tagged memory by a thread in
   no allocator call: one event per run of contiguous granules tagged by one instruction
   with one tag (a tagging loop is one event). 1 when it only extends the last event. */
static int ah_extends(struct ah_hist *h, uint32_t tid, uint64_t pc, uint64_t va, uint64_t size) {
    struct ah_event *last = ring_last(&h->tags);
    if (last != NULL && last->frames[0] == pc && last->tid == tid && (last->ptr >> 56) == (va >> 56)
            && (last->ptr & ((1ULL << 56) - 1)) + last->size == (va & ((1ULL << 56) - 1))) {
        last->size += size;
        return 1;
    }
    return 0;
}

static void ah_tag_write(struct mte_ctx *c, void *uc, uint64_t pc, uint64_t va, uint64_t size) {
    struct ah_hist *h = c->ah;
    if (h == NULL || h->tags.cap == 0 || ah_pending_of(h, c->ah_tid) != NULL || ah_extends(h, c->ah_tid, pc, va, size))
        return;
    uint64_t frames[AH_FRAMES];
    ah_backtrace(c, uc, pc, reg_get(c, uc, 30), frames);
    ah_record(h, &h->tags, AH_TAG_WRITE, AH_KIND_TAGS, c->ah_tid, va, size, frames);
}

/* The same, for a tag store the Python path ran (an instruction C declined). */
void ah_add_tag_write(struct ah_hist *h, uint32_t tid, uint64_t pc, uint64_t va, uint64_t size, const uint64_t *frames) {
    if (h->tags.cap == 0 || ah_pending_of(h, tid) != NULL || ah_extends(h, tid, pc, va, size))
        return;
    ah_record(h, &h->tags, AH_TAG_WRITE, AH_KIND_TAGS, tid, va, size, frames);
}

/* A history about to be freed is no longer the CPU's (an address space destroyed while
   its thread was the last on the CPU: nothing may record into it before the next switch). */
void mte_drop_history(struct mte_ctx *c, struct ah_hist *h) {
    if (c->ah == h)
        c->ah = NULL;
}

/* The history of the thread now on the CPU (NULL: none recorded). */
void mte_set_history(struct mte_ctx *c, struct ah_hist *h, uint32_t tid) {
    c->ah = h;
    c->ah_tid = tid;
}
