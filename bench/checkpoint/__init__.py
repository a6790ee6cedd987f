"""Durable-session costs: checkpoint size and Redis speed, throughput with checkpoints on, resume time.

One run; what it reports:

* ``checkpoint``: one real session checkpoint of ``preset`` at its default size. A session with
  ``examples/face.png`` and the first ``resume_seconds`` of ``examples/speech.wav``, sent at
  real-time pace (so the checkpoint holds what a live session's does: the encoder stream's state and
  only the rows received so far), runs on a generator that checkpoints every ``every_chunks``; its newest
  checkpoint is read back from Redis once the generator has been killed (below). ``bytes`` sums the
  tensors' bytes by name prefix: ``dit.memory.*`` K/V (``dit_memory``), ``dit.cond.*``
  (``conditioning``), ``audio.rows``, ``encoder.state``, ``decoder.state``, and ``other`` (RNG state
  and the chunk counter). ``stored_bytes`` is what the manifest lists (each tensor's raw bytes).
  ``write_ms`` / ``later_write_ms`` / ``read_ms`` are medians of ``store_repeats`` rounds, each on a fresh
  session: a first ``SessionStore.write_checkpoint`` (every part sent), a later version whose tensors all
  changed except the sink slots and the conditioning (only those parts sent: ``bytes_per_version``), and a
  ``read_checkpoint``, against a second private ``redis-server``
  (``liveact.launch.redis_process``), nothing else running on it; ``*_cpu_ms`` add this
  process's and redis-server's CPU time. ``computed`` repeats the DiT parts from the config
  (``liveact.memory.sizing`` and the conditioning shapes below) as a check of the 18B figures.
* ``fps_checkpoints_on`` / ``fps_checkpoints_off``: generation throughput through the three services
  for the first ``seconds`` of the speech, sent as fast as possible, on a generator with
  ``--checkpoint-every-chunks every_chunks`` (1: the worst case) and on one without Redis; with
  ``default_policy`` also on one with the generator's default policy (``fps_checkpoints_on_default``).
  All generators share one audio encoder and one decoder and are started once; sessions run one at a
  time, interleaved (on, off, default, on, off, ...), each generator warmed up with one short session
  first; medians are reported. ``cpu_ms_per_frame`` counts this process, the encoder, the decoder,
  the generator in use and redis-server (from ``/proc``); ``cpu_ms_per_frame_by_process`` splits it
  (the decoder's VAE dominates the tiny preset's CPU and its run-to-run spread). ``slowdown_percent`` =
  100 * (1 - fps on / fps off); the target (``target_slowdown_percent``) is reported as
  ``meets_target``, never asserted. ``checkpoints_per_session`` counts the CheckpointNotices a
  session received: a checkpoint due while the previous one is still being written is skipped, and
  with a client faster than real time the DiT runs up to ``--chunk-queue`` chunks ahead of the
  decoder, whose in-band marker a checkpoint waits for, so far fewer checkpoints than chunks are
  written; compare ``chunks_per_session``. ``checkpoints_skipped_per_session`` is the generator's own
  count of checkpoints due but not taken (``SessionEnd.checkpoints_skipped``): none goes unreported.
* ``realtime_checkpoints_on`` / ``_off`` (``realtime_repeats`` > 0): the same audio sent at real-time
  pace to the 'on' and 'off' generators, interleaved (on, off, on, off, ...). Throughput is then the
  audio's, so the figure is ``cpu_ms_per_frame`` and ``realtime_cpu_overhead_percent``: the CPU a live session's
  checkpoints cost.
* ``resume`` (scenario ``sigkill_mid_session``): the real-time session above is on a generator of
  its own; once it has received ``KILL_AFTER_CHECKPOINTS`` CheckpointNotices that generator is sent
  SIGKILL. An EXACT ``ResumeRequest`` with ``next_frame`` = the newest stored checkpoint's goes to
  the every-chunk generator (same Redis, encoder and decoder), the client sending the rest of the
  audio as fast as possible. Reported: seconds from opening the stream to the first FrameChunk and
  to the end of the stream (SessionEnd), once (not a median: one kill per run).
* ``liveact_18b_state``: computed, not measured: the per-session checkpoint of ``liveact-18b`` at
  416x720 and 512x512, bf16 and fp8 K/V, tensor parallel 1, 2 and 4. The K/V part comes from
  ``liveact.memory.sizing.session_state`` (persistent slots only, K and V, fp8 with one fp32 scale per
  token and head) and is split across ranks by heads; conditioning (``y`` and the embedded text+CLIP
  ``context``, model dtype bf16) and the audio rows (at most ``ROWS_KEPT`` float32 rows) are per
  session, counted once (on rank 0). The decoder's VAE-cache state is NOT in these totals: for the
  wan2.1 VAE with the current streaming decoder it is GB-scale and an open design problem; its size
  is estimated separately by running the wan2.1 ``StreamingDecoder`` on the meta device (no memory,
  no compute). The audio encoder's state (PCM history, about 0.1 MB) is not included either.

The machine is small and shared: ``machine`` records load averages before and after; compare
figures taken under the same load, and the CPU figures before the wall-clock ones.
"""

from bench.checkpoint.run import CheckpointBench, run

__all__ = ["CheckpointBench", "run"]
