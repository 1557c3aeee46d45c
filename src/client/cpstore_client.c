/*
 * libcpstore: see cpstore_client.h for the contract.
 *
 * The socket is non-blocking and every wait goes through poll() with the
 * time left before a deadline, so no call can hang longer than the
 * connection's timeout whatever the server does. Bytes read from the socket
 * land in a fixed buffer and go through the shared frame decoder, which
 * checks each header (and the payload length, against
 * FRAME_DEFAULT_MAX_PAYLOAD) before it allocates; a response can therefore
 * cost at most that much memory.
 *
 * A connection that breaks the protocol, is closed, or fails in the middle
 * of writing a frame is dead: the stream can no longer be trusted, so every
 * later call fails at once with the same error. A timeout while waiting for
 * a response is not fatal; the late response, if it comes, is simply one
 * that nobody asked for.
 */
#include "cpstore_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "clock.h"
#include "frame.h"
#include "status.h"

#ifndef CPSTORE_VERSION
#define CPSTORE_VERSION "unknown"
#endif

#define CPC_DEFAULT_TIMEOUT_MS 5000
#define CPC_RBUF_SIZE          (16 * 1024)
#define CPC_ERR_SIZE           256
#define CPC_UNIX_PREFIX        "unix:"

struct cpc {
    int fd;
    int timeout_ms;
    uint32_t budget_ms;
    uint32_t next_id;
    uint32_t max_request; /* largest payload the server accepts */
    int dead;             /* 0, or the CPC_E_* that killed the connection */
    frame_decoder_t dec;
    size_t rpos; /* unread bytes are rbuf[rpos..rlen) */
    size_t rlen;
    uint8_t rbuf[CPC_RBUF_SIZE];
    char err[CPC_ERR_SIZE];
};


__attribute__((format(printf, 3, 4))) static int
cpc_fail(cpc_t *c, int code, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    return code;
}


/* Fail and mark the connection unusable from now on. */
__attribute__((format(printf, 3, 4))) static int
cpc_kill(cpc_t *c, int code, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
    c->dead = code;
    return code;
}


static int cpc_remaining(int64_t deadline) {
    int64_t left = deadline - clock_mono_ms();

    if (left <= 0) {
        return 0;
    }
    return left > INT32_MAX ? INT32_MAX : (int)left;
}


/* Wait for events on fd until the deadline: 0, or -1 with errno set. */
static int cpc_poll(int fd, short events, int64_t deadline) {
    struct pollfd pfd;
    int rc;

    for (;;) {
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, cpc_remaining(deadline));
        if (rc > 0) {
            return 0;
        }
        if (rc == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}


/* ---- connecting ------------------------------------------------------ */


static int cpc_socket(int family, int type) {
    int fd = socket(family, type, 0);
    int flags;

    if (fd < 0) {
        return -1;
    }
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        int saved = errno;

        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}


/* Connect a non-blocking socket before the deadline: 0, or -1 and errno. */
static int cpc_connect_fd(int fd,
                          const struct sockaddr *sa,
                          socklen_t len,
                          int64_t deadline) {
    int soerr = 0;
    socklen_t soerr_len = sizeof(soerr);

    if (connect(fd, sa, len) == 0) {
        return 0;
    }
    if (errno != EINPROGRESS && errno != EINTR) {
        return -1;
    }
    if (cpc_poll(fd, POLLOUT, deadline) < 0) {
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) < 0) {
        return -1;
    }
    if (soerr != 0) {
        errno = soerr;
        return -1;
    }
    return 0;
}


static int
cpc_open_unix(const char *path, int64_t deadline, char *err, size_t err_len) {
    struct sockaddr_un sa;
    int fd;

    memset(&sa, 0, sizeof(sa));
    if (*path == '\0' || strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, err_len, "bad unix socket path '%s'", path);
        return -1;
    }
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);

    fd = cpc_socket(AF_UNIX, SOCK_STREAM);
    if (fd < 0) {
        snprintf(err, err_len, "socket: %s", strerror(errno));
        return -1;
    }
    if (cpc_connect_fd(fd, (struct sockaddr *)&sa, sizeof(sa), deadline) < 0) {
        snprintf(err, err_len, "connect %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}


/*
 * Split "host:port" or "[v6]:port" into host and port. A host with a colon
 * outside brackets is refused: "::1:7300" has no unambiguous reading.
 */
static int cpc_split_addr(const char *addr,
                          char *host,
                          size_t host_len,
                          char *port,
                          size_t port_len) {
    const char *h = addr;
    const char *colon;
    size_t hlen;

    if (*addr == '[') {
        const char *close = strchr(addr, ']');

        if (close == NULL || close[1] != ':') {
            return -1;
        }
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL) {
            return -1;
        }
        hlen = (size_t)(colon - addr);
        if (memchr(addr, ':', hlen) != NULL) {
            return -1;
        }
    }

    if (hlen == 0 || hlen >= host_len || strlen(colon + 1) >= port_len) {
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    strcpy(port, colon + 1);

    /* A numeric port in 1..65535, so a typo is not read as a service. */
    if (*port == '\0' || strspn(port, "0123456789") != strlen(port) ||
        strlen(port) > 5 || atoi(port) < 1 || atoi(port) > 65535) {
        return -1;
    }
    return 0;
}


static int
cpc_open_tcp(const char *addr, int64_t deadline, char *err, size_t err_len) {
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char host[256];
    char port[8];
    int fd = -1;
    int rc;

    if (cpc_split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, err_len,
                 "bad address '%s': want host:port, [ipv6]:port or "
                 "unix:/path",
                 addr);
        return -1;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, err_len, "resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }

    snprintf(err, err_len, "connect %s: no address", addr);
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;

        fd = cpc_socket(ai->ai_family, ai->ai_socktype);
        if (fd < 0) {
            snprintf(err, err_len, "socket: %s", strerror(errno));
            continue;
        }
        if (cpc_connect_fd(fd, ai->ai_addr, ai->ai_addrlen, deadline) == 0) {
            /* Requests are small and latency matters more than packets. */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            break;
        }
        snprintf(err, err_len, "connect %s: %s", addr, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}


cpc_t *
cpc_connect(const char *addr, int timeout_ms, char *err, size_t err_len) {
    char scratch[CPC_ERR_SIZE];
    int64_t deadline;
    cpc_t *c;
    int fd;

    if (err == NULL || err_len == 0) {
        err = scratch;
        err_len = sizeof(scratch);
    }
    if (addr == NULL || timeout_ms < 0) {
        snprintf(err, err_len, "bad argument");
        return NULL;
    }
    if (timeout_ms == 0) {
        timeout_ms = CPC_DEFAULT_TIMEOUT_MS;
    }

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }

    deadline = clock_mono_ms() + timeout_ms;
    if (strncmp(addr, CPC_UNIX_PREFIX, strlen(CPC_UNIX_PREFIX)) == 0) {
        fd = cpc_open_unix(addr + strlen(CPC_UNIX_PREFIX), deadline, err,
                           err_len);
    } else {
        fd = cpc_open_tcp(addr, deadline, err, err_len);
    }
    if (fd < 0) {
        free(c);
        return NULL;
    }

    err[0] = '\0'; /* a failed attempt before the one that worked */
    c->fd = fd;
    c->timeout_ms = timeout_ms;
    c->next_id = 1;
    c->max_request = FRAME_DEFAULT_MAX_PAYLOAD;
    frame_decoder_init(&c->dec, FRAME_DEFAULT_MAX_PAYLOAD);
    return c;
}


void cpc_close(cpc_t *c) {
    if (c == NULL) {
        return;
    }
    close(c->fd);
    frame_decoder_free(&c->dec);
    free(c);
}


const char *cpc_last_error(const cpc_t *c) {
    return c != NULL ? c->err : "no connection";
}


void cpc_set_budget(cpc_t *c, uint32_t budget_ms) {
    if (c != NULL) {
        c->budget_ms = budget_ms;
    }
}


/* ---- writing --------------------------------------------------------- */


static int
cpc_write_all(cpc_t *c, const uint8_t *buf, size_t len, int64_t deadline) {
    size_t sent = 0;

    while (sent < len) {
        ssize_t n = send(c->fd, buf + sent, len - sent, MSG_NOSIGNAL);

        if (n >= 0) {
            sent += (size_t)n;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (cpc_poll(c->fd, POLLOUT, deadline) == 0) {
                continue;
            }
            if (errno == ETIMEDOUT && sent == 0) {
                /* Nothing of the frame left: the stream is still whole. */
                return cpc_fail(c, CPC_E_TIMEOUT, "send: timed out");
            }
        }
        return cpc_kill(c, errno == ETIMEDOUT ? CPC_E_TIMEOUT : CPC_E_IO,
                        "send: %s", strerror(errno));
    }
    return CPC_OK;
}


/*
 * Send a frame whose payload already sits at buf + FRAME_HEADER_SIZE: the
 * header is written in front of it so the frame goes out in one piece.
 */
static int cpc_send_frame(cpc_t *c,
                          frame_header_t *hdr,
                          uint8_t *buf,
                          size_t payload_len) {
    hdr->version = FRAME_VERSION;
    hdr->length = (uint32_t)payload_len;
    frame_encode_header(hdr, buf);
    return cpc_write_all(c, buf, FRAME_HEADER_SIZE + payload_len,
                         clock_mono_ms() + c->timeout_ms);
}


/* Encode msg into a new buffer, after FRAME_HEADER_SIZE bytes of room. */
static int cpc_encode(cpc_t *c,
                      const pb_msgdesc_t *fields,
                      const void *msg,
                      uint8_t **out,
                      size_t *out_len) {
    pb_ostream_t os;
    size_t size;
    uint8_t *buf;

    if (!pb_get_encoded_size(&size, fields, msg)) {
        return cpc_fail(c, CPC_E_ENCODE,
                        "encode: a field is beyond its nanopb bound");
    }
    if (size > c->max_request) {
        return cpc_fail(c, CPC_E_ENCODE,
                        "encode: %zu bytes, above the server's %u", size,
                        (unsigned)c->max_request);
    }
    buf = malloc(FRAME_HEADER_SIZE + size + 1);
    if (buf == NULL) {
        return cpc_fail(c, CPC_E_NOMEM, "out of memory");
    }
    os = pb_ostream_from_buffer(buf + FRAME_HEADER_SIZE, size);
    if (!pb_encode(&os, fields, msg)) {
        free(buf);
        return cpc_fail(c, CPC_E_ENCODE, "encode: %s", PB_GET_ERROR(&os));
    }
    *out = buf;
    *out_len = os.bytes_written;
    return CPC_OK;
}


static uint32_t cpc_take_id(cpc_t *c) {
    uint32_t id = c->next_id++;

    if (c->next_id == 0) {
        c->next_id = 1;
    }
    return id;
}


int cpc_send(cpc_t *c,
             uint16_t method,
             const pb_msgdesc_t *fields,
             const void *msg,
             uint32_t *request_id) {
    frame_header_t hdr;
    uint8_t *buf;
    size_t len;
    int rc;

    if (c == NULL || fields == NULL || msg == NULL) {
        return CPC_E_ARG;
    }
    if (c->dead) {
        return c->dead;
    }
    rc = cpc_encode(c, fields, msg, &buf, &len);
    if (rc != CPC_OK) {
        return rc;
    }

    memset(&hdr, 0, sizeof(hdr));
    hdr.type = FRAME_REQUEST;
    hdr.method = method;
    hdr.request_id = cpc_take_id(c);
    hdr.budget_ms = c->budget_ms;
    rc = cpc_send_frame(c, &hdr, buf, len);
    free(buf);
    if (rc == CPC_OK && request_id != NULL) {
        *request_id = hdr.request_id;
    }
    return rc;
}


int cpc_send_raw(cpc_t *c,
                 uint16_t method,
                 const uint8_t *payload,
                 size_t len,
                 uint32_t *request_id) {
    frame_header_t hdr;
    uint8_t *buf;
    int rc;

    if (c == NULL || (payload == NULL && len > 0) ||
        len > FRAME_HARD_MAX_PAYLOAD) {
        return CPC_E_ARG;
    }
    if (c->dead) {
        return c->dead;
    }
    buf = malloc(FRAME_HEADER_SIZE + len + 1);
    if (buf == NULL) {
        return cpc_fail(c, CPC_E_NOMEM, "out of memory");
    }
    if (len > 0) {
        memcpy(buf + FRAME_HEADER_SIZE, payload, len);
    }

    memset(&hdr, 0, sizeof(hdr));
    hdr.type = FRAME_REQUEST;
    hdr.method = method;
    hdr.request_id = cpc_take_id(c);
    hdr.budget_ms = c->budget_ms;
    rc = cpc_send_frame(c, &hdr, buf, len);
    free(buf);
    if (rc == CPC_OK && request_id != NULL) {
        *request_id = hdr.request_id;
    }
    return rc;
}


/* A connection-level frame (PING, PONG, HELLO) with an optional payload. */
static int cpc_send_control(
    cpc_t *c, int type, uint32_t id, const uint8_t *payload, size_t len) {
    frame_header_t hdr;
    uint8_t *buf;
    int rc;

    buf = malloc(FRAME_HEADER_SIZE + len + 1);
    if (buf == NULL) {
        return cpc_fail(c, CPC_E_NOMEM, "out of memory");
    }
    if (len > 0) {
        memcpy(buf + FRAME_HEADER_SIZE, payload, len);
    }
    memset(&hdr, 0, sizeof(hdr));
    hdr.type = (uint8_t)type;
    hdr.request_id = id;
    rc = cpc_send_frame(c, &hdr, buf, len);
    free(buf);
    return rc;
}


/* ---- reading --------------------------------------------------------- */


/* The next whole frame of any type, before the deadline. */
static int cpc_read_frame(cpc_t *c,
                          int64_t deadline,
                          frame_header_t *hdr,
                          const uint8_t **payload) {
    ssize_t n;

    for (;;) {
        while (c->rpos < c->rlen) {
            size_t used = 0;
            int rc = frame_decoder_feed(&c->dec, c->rbuf + c->rpos,
                                        c->rlen - c->rpos, &used, hdr, payload);

            c->rpos += used;
            if (rc == FRAME_OK) {
                return CPC_OK;
            }
            if (rc != FRAME_NEED_MORE) {
                return cpc_kill(c, CPC_E_PROTOCOL, "bad frame from server: %s",
                                frame_strerror(rc));
            }
        }
        c->rpos = 0;
        c->rlen = 0;

        if (cpc_poll(c->fd, POLLIN, deadline) < 0) {
            if (errno == ETIMEDOUT) {
                return cpc_fail(c, CPC_E_TIMEOUT, "no response within %d ms",
                                c->timeout_ms);
            }
            return cpc_kill(c, CPC_E_IO, "poll: %s", strerror(errno));
        }

        n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
        if (n > 0) {
            c->rlen = (size_t)n;
        } else if (n == 0) {
            return cpc_kill(c, CPC_E_IO, "server closed the connection");
        } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            return cpc_kill(c, CPC_E_IO, "recv: %s", strerror(errno));
        }
    }
}


/* Decode an Error payload; never fails, so the status is always reported. */
static void cpc_decode_error(const uint8_t *payload,
                             size_t len,
                             uint8_t status,
                             cpstore_v1_Error *error) {
    pb_istream_t is = pb_istream_from_buffer(payload, len);

    if (!pb_decode(&is, cpstore_v1_Error_fields, error)) {
        memset(error, 0, sizeof(*error));
        snprintf(error->message, sizeof(error->message),
                 "(error payload did not decode: %s)", PB_GET_ERROR(&is));
    }
    if (error->code == 0) {
        error->code = status;
    }
}


/*
 * The next frame that is not PING (answered here) and not GOAWAY (which
 * ends the connection). Frames only a client may send are refused.
 */
static int cpc_next_frame(cpc_t *c,
                          int64_t deadline,
                          frame_header_t *hdr,
                          const uint8_t **payload) {
    cpstore_v1_Error goaway;
    int rc;

    if (c->dead) {
        return c->dead;
    }
    for (;;) {
        rc = cpc_read_frame(c, deadline, hdr, payload);
        if (rc != CPC_OK) {
            return rc;
        }
        switch (hdr->type) {
        case FRAME_PING:
            rc = cpc_send_control(c, FRAME_PONG, hdr->request_id, *payload,
                                  hdr->length);
            if (rc != CPC_OK) {
                return rc;
            }
            continue;
        case FRAME_GOAWAY:
            cpc_decode_error(*payload, hdr->length, hdr->status, &goaway);
            return cpc_kill(c, CPC_E_PROTOCOL, "server sent goaway: %s: %s",
                            cps_status_name((int)goaway.code), goaway.message);
        case FRAME_REQUEST:
        case FRAME_CANCEL:
        case FRAME_HELLO:
            return cpc_kill(c, CPC_E_PROTOCOL, "server sent a %s frame",
                            frame_type_name(hdr->type));
        default:
            return CPC_OK;
        }
    }
}


static int cpc_recv_until(cpc_t *c, cpc_reply_t *reply, int64_t deadline) {
    frame_header_t hdr;
    const uint8_t *payload;
    int rc;

    do {
        rc = cpc_next_frame(c, deadline, &hdr, &payload);
        if (rc != CPC_OK) {
            return rc;
        }
        /* A stray PONG or HELLO_ACK answers nothing we wait for here. */
    } while (hdr.type != FRAME_RESPONSE);

    memset(reply, 0, sizeof(*reply));
    reply->request_id = hdr.request_id;
    reply->method = hdr.method;
    reply->status = hdr.status;
    reply->retry_after_ms = hdr.budget_ms;
    reply->payload = payload;
    reply->payload_len = hdr.length;
    if (hdr.status != CPS_OK) {
        cpc_decode_error(payload, hdr.length, hdr.status, &reply->error);
    }
    return CPC_OK;
}


int cpc_recv(cpc_t *c, cpc_reply_t *reply) {
    if (c == NULL || reply == NULL) {
        return CPC_E_ARG;
    }
    return cpc_recv_until(c, reply, clock_mono_ms() + c->timeout_ms);
}


int cpc_decode(const cpc_reply_t *reply,
               const pb_msgdesc_t *fields,
               void *msg) {
    pb_istream_t is;

    if (reply == NULL || fields == NULL || msg == NULL) {
        return CPC_E_ARG;
    }
    is = pb_istream_from_buffer(reply->payload, reply->payload_len);
    return pb_decode(&is, fields, msg) ? CPC_OK : CPC_E_DECODE;
}


/* cpc_decode() with the reason kept in the connection's last error. */
static int cpc_decode_into(cpc_t *c,
                           const uint8_t *payload,
                           size_t len,
                           const pb_msgdesc_t *fields,
                           void *msg) {
    pb_istream_t is = pb_istream_from_buffer(payload, len);

    if (!pb_decode(&is, fields, msg)) {
        return cpc_fail(c, CPC_E_DECODE, "decode response: %s",
                        PB_GET_ERROR(&is));
    }
    return CPC_OK;
}


int cpc_call(cpc_t *c,
             uint16_t method,
             const pb_msgdesc_t *req_fields,
             const void *req,
             const pb_msgdesc_t *resp_fields,
             void *resp,
             cpc_reply_t *reply) {
    int64_t deadline;
    uint32_t id;
    int rc;

    if (c == NULL || reply == NULL || (resp != NULL && resp_fields == NULL)) {
        return CPC_E_ARG;
    }
    deadline = clock_mono_ms() + c->timeout_ms;
    rc = cpc_send(c, method, req_fields, req, &id);
    if (rc != CPC_OK) {
        return rc;
    }

    do {
        rc = cpc_recv_until(c, reply, deadline);
        if (rc != CPC_OK) {
            return rc;
        }
    } while (reply->request_id != id);

    if (reply->status != CPS_OK || resp == NULL) {
        return CPC_OK;
    }
    if (reply->method != method) {
        return cpc_kill(c, CPC_E_PROTOCOL,
                        "response to method 0x%04x names method 0x%04x",
                        (unsigned)method, (unsigned)reply->method);
    }
    return cpc_decode_into(c, reply->payload, reply->payload_len, resp_fields,
                           resp);
}


/* Wait for the first frame of the given type; other frames are dropped. */
static int cpc_wait_type(cpc_t *c,
                         int type,
                         frame_header_t *hdr,
                         const uint8_t **payload) {
    int64_t deadline = clock_mono_ms() + c->timeout_ms;
    int rc;

    do {
        rc = cpc_next_frame(c, deadline, hdr, payload);
        if (rc != CPC_OK) {
            return rc;
        }
    } while (hdr->type != type);
    return CPC_OK;
}


int cpc_hello(cpc_t *c, cpstore_v1_HelloAck *ack) {
    cpstore_v1_Hello hello = cpstore_v1_Hello_init_zero;
    frame_header_t out;
    frame_header_t hdr;
    const uint8_t *payload;
    uint8_t *buf;
    size_t len;
    int rc;

    if (c == NULL || ack == NULL) {
        return CPC_E_ARG;
    }
    if (c->dead) {
        return c->dead;
    }
    hello.max_version = FRAME_VERSION;
    snprintf(hello.client, sizeof(hello.client), "libcpstore/%s",
             CPSTORE_VERSION);

    rc = cpc_encode(c, cpstore_v1_Hello_fields, &hello, &buf, &len);
    if (rc != CPC_OK) {
        return rc;
    }
    memset(&out, 0, sizeof(out));
    out.type = FRAME_HELLO;
    rc = cpc_send_frame(c, &out, buf, len);
    free(buf);
    if (rc != CPC_OK) {
        return rc;
    }

    rc = cpc_wait_type(c, FRAME_HELLO_ACK, &hdr, &payload);
    if (rc != CPC_OK) {
        return rc;
    }
    rc = cpc_decode_into(c, payload, hdr.length, cpstore_v1_HelloAck_fields,
                         ack);
    if (rc != CPC_OK) {
        return rc;
    }
    if (ack->version != FRAME_VERSION) {
        return cpc_kill(c, CPC_E_PROTOCOL, "server chose protocol version %u",
                        (unsigned)ack->version);
    }
    if (ack->max_payload != 0 && ack->max_payload < c->max_request) {
        c->max_request = ack->max_payload;
    }
    return CPC_OK;
}


int cpc_ping(cpc_t *c) {
    frame_header_t hdr;
    const uint8_t *payload;
    int rc;

    if (c == NULL) {
        return CPC_E_ARG;
    }
    if (c->dead) {
        return c->dead;
    }
    rc = cpc_send_control(c, FRAME_PING, 0, NULL, 0);
    if (rc != CPC_OK) {
        return rc;
    }
    return cpc_wait_type(c, FRAME_PONG, &hdr, &payload);
}


/* ---- typed wrappers -------------------------------------------------- */


int cpc_health_check(cpc_t *c,
                     cpstore_v1_HealthCheckResponse *resp,
                     cpc_reply_t *reply) {
    cpstore_v1_HealthCheckRequest req = cpstore_v1_HealthCheckRequest_init_zero;

    return cpc_call(c, cpstore_v1_HealthMethod_HEALTH_METHOD_CHECK,
                    cpstore_v1_HealthCheckRequest_fields, &req,
                    cpstore_v1_HealthCheckResponse_fields, resp, reply);
}


int cpc_ratelimit_check(cpc_t *c,
                        const cpstore_v1_RateLimitCheckRequest *req,
                        cpstore_v1_RateLimitCheckResponse *resp,
                        cpc_reply_t *reply) {
    return cpc_call(c, cpstore_v1_RateLimiterMethod_RATE_LIMITER_METHOD_CHECK,
                    cpstore_v1_RateLimitCheckRequest_fields, req,
                    cpstore_v1_RateLimitCheckResponse_fields, resp, reply);
}


int cpc_apikeys_create(cpc_t *c,
                       const cpstore_v1_CreateApiKeyRequest *req,
                       cpstore_v1_CreateApiKeyResponse *resp,
                       cpc_reply_t *reply) {
    return cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_CREATE,
                    cpstore_v1_CreateApiKeyRequest_fields, req,
                    cpstore_v1_CreateApiKeyResponse_fields, resp, reply);
}


int cpc_apikeys_verify(cpc_t *c,
                       const cpstore_v1_VerifyApiKeyRequest *req,
                       cpstore_v1_VerifyApiKeyResponse *resp,
                       cpc_reply_t *reply) {
    return cpc_call(c, cpstore_v1_ApiKeysMethod_API_KEYS_METHOD_VERIFY,
                    cpstore_v1_VerifyApiKeyRequest_fields, req,
                    cpstore_v1_VerifyApiKeyResponse_fields, resp, reply);
}
