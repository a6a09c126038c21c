/* Voice activity detection and endpointing for one stream (docs/API.md
 * "speech_started", "final").
 *
 * Wraps Debian's libwebrtc-audio-processing VAD (WebRtcVad_* C functions;
 * the prototypes are declared in vad.c since the header is not shipped).
 * Audio is cut into frames of frame_ms (10, 20 or 30); a partial frame at the
 * end of a chunk is carried into the next one, so chunks need not be frame
 * multiples. Frames whose energy is far below speech are called silence
 * without running the WebRTC classifier (cheap pre-check). 16 kHz audio
 * reaches the classifier decimated to 8 kHz by our own filter
 * (vad_decimate2), which is what WebRTC's 16 kHz entry point does with a
 * slower one.
 *
 * Positions are counted in samples of the stream since it started
 * (vad_feed calls added up), and reported in ms of audio time.
 * No I/O, no allocation after vad_create(). */
#ifndef ASRD_VAD_H
#define ASRD_VAD_H

#include <stddef.h>
#include <stdint.h>

struct vad;

struct vad_cfg {
    unsigned sample_rate;     /* 8000, 16000, 32000 or 48000 */
    unsigned frame_ms;        /* 10, 20 or 30 */
    int      mode;            /* 0 (least aggressive) .. 3 */
    unsigned endpointing_ms;  /* silence after speech that ends an utterance */
};

enum vad_event_type {
    VAD_SPEECH_START = 1,     /* an utterance begins */
    VAD_SPEECH_END   = 2,     /* an utterance ends: endpointing_ms of silence followed */
};

struct vad_event {
    enum vad_event_type type;
    uint64_t at_sample;       /* stream position where the event was decided (end of
                                 the frame that triggered it); the audio before it
                                 belongs to what came before the event */
    uint64_t offset_ms;       /* START: start of the first speech frame;
                                 END: end of the last speech frame (end_ms) */
    uint64_t speech_ms_total; /* speech ms classified from stream start up to at_sample */
};

/* Creates a detector. Returns NULL on invalid cfg or allocation failure. */
struct vad *vad_create(const struct vad_cfg *cfg);
void vad_destroy(struct vad *v);

/* Validates a config without creating anything: 0 or ASR_EINVAL. */
int vad_cfg_check(const struct vad_cfg *cfg);

/* Feeds n samples. Events decided within these samples are written to
 * ev[0..cap) in order, their count to *n_ev. At most one START and one END
 * per frame; with cap >= 2 * (n / frame_samples + 2) nothing is dropped
 * (returns ASR_EAGAIN and stops early, consuming nothing past the last
 * reported event, if cap would overflow - callers size cap to avoid that;
 * the growth of vad_samples() tells how many samples were taken).
 * Returns 0. */
int vad_feed(struct vad *v, const int16_t *pcm, size_t n,
             struct vad_event *ev, size_t cap, size_t *n_ev);

/* Ends the open utterance now (finalize, stop, idle, shutdown). If one was
 * open, returns 1 and fills *ev with a VAD_SPEECH_END whose offset_ms is the
 * end of its last speech frame; returns 0 when none was open. The carried
 * partial frame is kept (it is still audio of the stream). */
int vad_end_utterance(struct vad *v, struct vad_event *ev);

/* Continues a stream that another detector ran up to position samples
 * (resume on another worker): no frame carried; in_utt says whether an
 * utterance starting at utt_start_ms is open there. */
void vad_restore(struct vad *v, uint64_t samples, int in_utt, uint64_t utt_start_ms,
                 unsigned silence_ms, uint64_t last_speech_end_ms);
/* Silence since the last speech frame of the open utterance, and where that
 * speech ended (ms of audio): what vad_restore needs to end the utterance
 * where an uninterrupted stream would. */
unsigned vad_silence_ms(const struct vad *v);
uint64_t vad_last_speech_end_ms(const struct vad *v);

int      vad_in_utterance(const struct vad *v);  /* 1 between START and END */
uint64_t vad_utterance_start_ms(const struct vad *v);
uint64_t vad_samples(const struct vad *v);       /* samples fed so far */
uint64_t vad_offset_ms(const struct vad *v);     /* vad_samples in ms */
uint64_t vad_speech_ms_total(const struct vad *v);
size_t   vad_sizeof(const struct vad_cfg *cfg);  /* bytes vad_create allocates */

/* The 16 -> 8 kHz decimator in front of the classifier for 16 kHz streams
 * (a halfband FIR; vad.c says why not WebRTC's own). Reads
 * e[0 .. VAD_DECIM_HIST + 2 * n_out): the last VAD_DECIM_HIST samples before
 * the block, then the block; e must have VAD_DECIM_PAD more readable
 * samples after that (read, never used). Writes y[0 .. n_out). */
#define VAD_DECIM_HIST 10
#define VAD_DECIM_PAD  16
void vad_decimate2(const int16_t *e, int16_t *y, size_t n_out);

#endif
