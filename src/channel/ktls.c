/*
 * ramflow - kernel TLS: the record layer of an established GnuTLS session
 * handed to the kernel (TCP_ULP "tls", SOL_TLS TLS_TX / TLS_RX), so that
 * records are encrypted in the kernel's send path and decrypted in its
 * receive path instead of in GnuTLS.
 *
 * Why by hand: GnuTLS offloads by itself only when it does the socket
 * I/O (gnutls_transport_set_int) and "ktls = true" is in its system
 * configuration, while ramflow's TLS layer keeps its own pull/push for
 * whole-call deadlines and cancel (tls.c).  So once the handshake and the
 * verdict byte are done and GnuTLS holds no record, this takes the
 * session's traffic keys, static IVs and sequence numbers
 * (gnutls_record_get_state) and gives them to the kernel.  Sessions are
 * TLS 1.3 with GNUTLS_NO_TICKETS, so no handshake message follows the
 * handshake.  Where the kernel has no "tls" ULP the first setsockopt
 * fails, nothing has changed, and the session stays in user space.
 */
#include "channel/ktls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <linux/tls.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

/* What the kernel takes for one direction, for each cipher it knows. */
typedef union {
    struct tls_crypto_info info;
    struct tls12_crypto_info_aes_gcm_128 gcm128;
    struct tls12_crypto_info_aes_gcm_256 gcm256;
    struct tls12_crypto_info_chacha20_poly1305 chacha;
} KtlsInfo;

/* Fills `ki` for one direction (read = 1: receive) from the session's
 * record state.  TLS 1.3's 12-byte IV is the kernel's salt followed by
 * its iv for AES-GCM, and its iv alone for ChaCha20-Poly1305.
 * @return false with `why` set if the state does not fit. */
static bool crypto_info(gnutls_session_t sess, unsigned read,
                        gnutls_cipher_algorithm_t cipher, KtlsInfo *ki,
                        char *why, size_t cap)
{
    gnutls_datum_t iv, key;
    unsigned char seq[8];
    int r = gnutls_record_get_state(sess, read, NULL, &iv, &key, seq);
    if (r < 0) {
        snprintf(why, cap, "GnuTLS gives no record state: %s",
                 gnutls_strerror(r));
        return false;
    }
    memset(ki, 0, sizeof(*ki));
    ki->info.version = TLS_1_3_VERSION;
    switch (cipher) {
    case GNUTLS_CIPHER_AES_128_GCM:
        if (key.size != 16 || iv.size != 12) {
            break;
        }
        ki->info.cipher_type = TLS_CIPHER_AES_GCM_128;
        memcpy(ki->gcm128.key, key.data, 16);
        memcpy(ki->gcm128.salt, iv.data, 4);
        memcpy(ki->gcm128.iv, iv.data + 4, 8);
        memcpy(ki->gcm128.rec_seq, seq, 8);
        return true;
    case GNUTLS_CIPHER_AES_256_GCM:
        if (key.size != 32 || iv.size != 12) {
            break;
        }
        ki->info.cipher_type = TLS_CIPHER_AES_GCM_256;
        memcpy(ki->gcm256.key, key.data, 32);
        memcpy(ki->gcm256.salt, iv.data, 4);
        memcpy(ki->gcm256.iv, iv.data + 4, 8);
        memcpy(ki->gcm256.rec_seq, seq, 8);
        return true;
    case GNUTLS_CIPHER_CHACHA20_POLY1305:
        if (key.size != 32 || iv.size != 12) {
            break;
        }
        ki->info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
        memcpy(ki->chacha.key, key.data, 32);
        memcpy(ki->chacha.iv, iv.data, 12);
        memcpy(ki->chacha.rec_seq, seq, 8);
        return true;
    default:
        break;
    }
    snprintf(why, cap, "cipher %s (key %u, IV %u bytes) has no kernel "
             "offload here", gnutls_cipher_get_name(cipher), key.size,
             iv.size);
    return false;
}

static size_t info_size(const KtlsInfo *ki)
{
    switch (ki->info.cipher_type) {
    case TLS_CIPHER_AES_GCM_128:
        return sizeof(ki->gcm128);
    case TLS_CIPHER_AES_GCM_256:
        return sizeof(ki->gcm256);
    default:
        return sizeof(ki->chacha);
    }
}

int rf_ktls_offload(int fd, gnutls_session_t sess, char *why, size_t cap)
{
    if (gnutls_protocol_get_version(sess) != GNUTLS_TLS1_3) {
        snprintf(why, cap, "only TLS 1.3 sessions are offloaded");
        return 0;
    }
    if (gnutls_record_check_pending(sess) > 0) {
        snprintf(why, cap, "GnuTLS still holds received data");
        return 0;
    }
    gnutls_cipher_algorithm_t cipher = gnutls_cipher_get(sess);
    KtlsInfo tx, rx;
    if (!crypto_info(sess, 0, cipher, &tx, why, cap) ||
        !crypto_info(sess, 1, cipher, &rx, why, cap)) {
        return 0;
    }
    int ret = 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")) < 0) {
        snprintf(why, cap, "the kernel offers no \"tls\" ULP (TCP_ULP: %s)",
                 strerror(errno));
    } else if (setsockopt(fd, SOL_TLS, TLS_TX, &tx, info_size(&tx)) < 0) {
        /* The ULP without keys passes bytes through as they are, so
         * GnuTLS can go on encrypting them itself. */
        snprintf(why, cap, "the kernel refused the send keys (%s)",
                 strerror(errno));
    } else if (setsockopt(fd, SOL_TLS, TLS_RX, &rx, info_size(&rx)) < 0) {
        snprintf(why, cap, "the kernel took the send keys but refused the "
                 "receive keys (%s)", strerror(errno));
        ret = -1;
    } else {
        ret = 1;
    }
    explicit_bzero(&tx, sizeof(tx));
    explicit_bzero(&rx, sizeof(rx));
    return ret;
}
