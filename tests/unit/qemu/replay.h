/* replay.h - a fake QEMU that replays a recorded conversation.
 *
 * A transcript is text, one chunk per line, in the order it happened:
 *   < bytes      the server (QEMU) sends these
 *   > bytes      the client must send exactly these
 *   close        the server shuts down its sending side
 *   pause MS     the server waits (to split a reply across reads)
 *   # comment    ignored, as are blank lines
 * Bytes use C escapes: \\ \r \n \t \xHH. Everything else is literal.
 *
 * The server runs in a thread on one end of a socketpair; the test drives
 * the client on the other. After the script, the server reads until the
 * client closes: extra client bytes are a failure. On a mismatch the server
 * closes at once so the client fails fast. A failing cmocka assertion
 * leaves the thread running: keep struct replay in static storage.
 */
#ifndef BM_TEST_REPLAY_H
#define BM_TEST_REPLAY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

struct replay_step {
    enum { STEP_SEND, STEP_EXPECT, STEP_CLOSE, STEP_PAUSE } kind;
    char *data;
    size_t len;        /* bytes, or milliseconds for STEP_PAUSE */
};

struct replay {
    int fd;            /* server end */
    int listen_fd;     /* -1 unless replay_listen_file */
    pthread_t thread;
    bool started;
    struct replay_step *steps;
    size_t nsteps;
    size_t done;       /* steps completed */
    char fail[512];    /* first failure; empty when the script ran clean */
};

/* Load a transcript from TESTDATA_DIR/qemu/<name> or from a string, start
 * the server, and return the client's fd (owned by the caller). -1 on a
 * broken transcript or system error (message in r->fail). */
int replay_start_file(struct replay *r, const char *name);
int replay_start_text(struct replay *r, const char *text);

/* As replay_start_file, but the server listens on the unix socket `path`
 * and accepts one client (to test the clients' connect functions).
 * Returns 0 or -1. */
int replay_listen_file(struct replay *r, const char *name, const char *path);

/* Join the server (the client must have closed its fd first) and free the
 * script. Returns true when every step ran and nothing extra was sent. */
bool replay_finish(struct replay *r);

/* Read a whole file under TESTDATA_DIR/qemu; NULL on failure. */
char *replay_read_data(const char *name, size_t *len);

/* VALUE of a "# expect KEY=VALUE" line: what the recorder (a separate
 * parser, in Python) read from the same conversation. Caller frees; NULL
 * when absent. */
char *replay_expect(const char *name, const char *key);
/* The same as an unsigned number (0x prefix for hex); fails the test if
 * absent. */
unsigned long long replay_expect_u64(const char *name, const char *key);

/* Transcripts built in code, for the hostile variants. */
struct script {
    char *buf;
    size_t len, cap;
};
/* Append text as is (lines in the transcript format, '\n'-terminated). */
void script_add(struct script *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "< $payload#cs" (dir '<') or "> $payload#cs" (dir '>'), checksum computed. */
void script_pkt(struct script *s, char dir, const char *payload);
/* A whole acked exchange: > request, < +, < reply, > +. */
void script_exchange(struct script *s, const char *request,
                     const char *reply);
void script_free(struct script *s);

/* Test helpers shared by the replay tests. Each test file defines
 * `static struct replay rep;` (static: it outlives a failed test's frame).
 * OK(call) fails the test with the error if call < 0; inside it, E is the
 * error to pass. FAILS(call, part) requires -1 and a message containing part. */
#define OK(call)                                                    \
    do {                                                            \
        struct bm_err e_ = BM_ERR_INIT;                             \
        if ((call) < 0)                                             \
            fail_msg("%s: %s [replay: %s]", #call, bm_err_msg(&e_), \
                     rep.fail);                                     \
    } while (0)
#define E (&e_)

#define FAILS(call, part)                                           \
    do {                                                            \
        struct bm_err e_ = BM_ERR_INIT;                             \
        if ((call) != -1)                                           \
            fail_msg("%s did not fail", #call);                     \
        if (strstr(bm_err_msg(&e_), part) == NULL)                  \
            fail_msg("%s: '%s' lacks '%s'", #call,                  \
                     bm_err_msg(&e_), part);                        \
    } while (0)

#endif
