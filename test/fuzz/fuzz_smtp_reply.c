/*
 * fuzz_smtp_reply.c - libFuzzer target for what a remote SMTP server says
 * to the client (delivery/smtp_client_reply.c): the input is a byte stream
 * as read from the socket, split into lines and replies exactly as the
 * client does, with EHLO keywords taken from every line.
 *
 * Beyond memory safety it checks the promises of dlv_smtp.h: a line is
 * never longer than DLV_SMTP_LINE_MAX, a reply's text and its formatted
 * form stay within DLV_REPLY_MAX and hold no control characters, the
 * status is "C.x.y" of the code's class, and dot-stuffing any input (split
 * anywhere) gives CRLF-only lines where no line is a lone ".".
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/dlv_smtp.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_reply(const dlv_smtp_reply *r)
{
    char out[DLV_REPLY_MAX + 1];
    CHECK(r->code >= 200 && r->code <= 599);
    CHECK(r->status[0] == '0' + r->code / 100 || (r->code / 100 == 3 && r->status[0] == '4'));
    CHECK(r->status[1] == '.');
    CHECK(strlen(r->text) == r->text_len && r->text_len <= DLV_REPLY_MAX);
    for (size_t i = 0; i < r->text_len; i++)
        CHECK((unsigned char)r->text[i] >= 0x20 && r->text[i] != 0x7f);
    dlv_smtp_reply_format(r, out, sizeof(out));
    CHECK(strlen(out) <= DLV_REPLY_MAX);
}

static void check_stuffing(const uint8_t *data, size_t size)
{
    char *out = malloc(2 * size + 8);
    if (!out)
        return;
    int st = 0;
    size_t o = 0, step = size ? (data[0] % 7) + 1 : 1;
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        o += dlv_smtp_stuff(&st, (const char *)data + i, n, out + o);
        CHECK(o <= 2 * (i + n) + 2);
    }
    o += dlv_smtp_stuff_end(&st, out + o);
    CHECK(o >= 3 && memcmp(out + o - 3, ".\r\n", 3) == 0);
    /* Every LF follows a CR, every CR precedes an LF, only the last line is ".". */
    for (size_t i = 0; i < o; i++) {
        if (out[i] == '\n')
            CHECK(i > 0 && out[i - 1] == '\r');
        if (out[i] == '\r')
            CHECK(i + 1 < o && out[i + 1] == '\n');
        if (out[i] == '.' && (i == 0 || out[i - 1] == '\n') && i + 3 != o)
            CHECK(i + 1 < o && out[i + 1] != '\r');
    }
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data;
    size_t left = size;
    dlv_smtp_reply r;
    dlv_smtp_ext ext = {0};
    dlv_smtp_reply_init(&r);
    while (left > 0) {
        size_t ll = 0;
        long n = dlv_smtp_next_line(p, left, &ll);
        if (n == 0)
            break;
        if (n < 0) {
            CHECK(left >= DLV_SMTP_LINE_MAX + 2 || memchr(p, '\n', left) != NULL);
            break;
        }
        CHECK((size_t)n <= left && ll <= DLV_SMTP_LINE_MAX && ll < (size_t)n);
        const char *text = NULL;
        size_t tl = 0;
        int rc = dlv_smtp_reply_line(&r, p, ll, &text, &tl);
        if (rc < 0) {
            dlv_smtp_reply_init(&r);
        } else {
            CHECK(text >= p && text + tl <= p + ll);
            dlv_smtp_ext_line(&ext, text, tl);
            if (rc == 1)
                check_reply(&r);
        }
        p += n;
        left -= (size_t)n;
    }
    check_stuffing(data, size);

    char user[64], pass[64];
    if (dlv_smtp_auth_parse((const char *)data, size, user, sizeof(user), pass, sizeof(pass)) == 0)
        CHECK(user[0] && pass[0] && strlen(user) < sizeof(user) && strlen(pass) < sizeof(pass));
    return 0;
}
