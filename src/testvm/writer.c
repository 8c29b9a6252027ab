/* ramflow - a simulated guest writing its memory (see writer.h). */
#include "testvm/writer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/guest_writes.h"

struct RfWriter {
    RfRamSource *src;
    uint64_t rate;
    uint64_t rng;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool paused, quit, writing;
    _Atomic uint64_t pages;
};

static uint64_t next_rand(uint64_t *s)
{
    /* splitmix64: fast and good enough to pick pages. */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The guest's stores: bump the page's counter, scribble one byte. */
static RF_GUEST_WRITES void guest_store(uint8_t *p, uint64_t r)
{
    uint64_t counter;
    memcpy(&counter, p, sizeof(counter));
    counter++;
    memcpy(p, &counter, sizeof(counter));
    p[8 + r % (RF_PAGE_SIZE - 16)] = (uint8_t)(r >> 32);
}

static void write_one(RfWriter *w)
{
    unsigned nb = rf_ram_source_block_count(w->src);
    unsigned b = (unsigned)(next_rand(&w->rng) % nb);
    const char *name;
    uint64_t size;
    uint8_t *host;
    rf_ram_source_block(w->src, b, &name, &size, &host);
    uint64_t page = next_rand(&w->rng) % (size / RF_PAGE_SIZE);
    guest_store(host + page * RF_PAGE_SIZE, next_rand(&w->rng));
    rf_ram_source_mark_dirty(w->src, b, page * RF_PAGE_SIZE, RF_PAGE_SIZE);
    atomic_fetch_add_explicit(&w->pages, 1, memory_order_relaxed);
}

static void *writer_thread(void *arg)
{
    RfWriter *w = arg;
    double start = rf_now();
    uint64_t done = 0;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (w->paused && !w->quit) {
            pthread_cond_wait(&w->cond, &w->lock);
        }
        if (w->quit) {
            pthread_mutex_unlock(&w->lock);
            break;
        }
        w->writing = true;
        pthread_mutex_unlock(&w->lock);
        /* Write in bursts of up to 64 pages, pacing to the rate. */
        for (int i = 0; i < 64; i++) {
            write_one(w);
        }
        done += 64;
        pthread_mutex_lock(&w->lock);
        w->writing = false;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->lock);
        if (w->rate) {
            double due = start + (double)done / (double)w->rate;
            double now = rf_now();
            if (due > now) {
                rf_sleep(due - now < 0.05 ? due - now : 0.05);
            } else if (now - due > 1) {
                /* Fell far behind (paused): do not try to catch up. */
                start = now;
                done = 0;
            }
        }
    }
    return NULL;
}

RfWriter *rf_writer_start(RfRamSource *src, uint64_t pages_per_s,
                          uint64_t seed, RfError **errp)
{
    RfWriter *w = calloc(1, sizeof(*w));
    if (!w) {
        rf_error_set(errp, RF_ERR_GENERIC, "out of memory");
        return NULL;
    }
    w->src = src;
    w->rate = pages_per_s;
    w->rng = seed;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, writer_thread, w) != 0) {
        rf_error_set(errp, RF_ERR_GENERIC, "cannot start the writer thread");
        free(w);
        return NULL;
    }
    return w;
}

void rf_writer_pause(RfWriter *w)
{
    pthread_mutex_lock(&w->lock);
    w->paused = true;
    while (w->writing) {
        pthread_cond_wait(&w->cond, &w->lock);
    }
    pthread_mutex_unlock(&w->lock);
}

void rf_writer_resume(RfWriter *w)
{
    pthread_mutex_lock(&w->lock);
    w->paused = false;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

uint64_t rf_writer_pages(RfWriter *w)
{
    return atomic_load(&w->pages);
}

void rf_writer_stop(RfWriter *w)
{
    if (!w) {
        return;
    }
    pthread_mutex_lock(&w->lock);
    w->quit = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void rf_writer_hook_pause(void *opaque)
{
    rf_writer_pause(opaque);
}

void rf_writer_hook_resume(void *opaque)
{
    rf_writer_resume(opaque);
}
