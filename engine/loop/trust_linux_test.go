package loop_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

// TestPromptFlippedDuringEvaluateNeverRuns: while evaluations run, the
// incumbent's prompt file is swapped on disk after every read of it
// (inotify tells when the server has read it), to the verified text or to
// a tampered one at random. So some evaluations verify the original text
// and then find the tampered one if they read the file again. Every
// evaluation must either refuse the variant or run the verified prompt:
// the model never receives the tampered text.
func TestPromptFlippedDuringEvaluateNeverRuns(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	_, err = w.GetVariant(tenantName, "v0000") // materializes v0000
	require.NoError(t, err)
	vdir := filepath.Join(f.TenantDir(), "variants", "v0000")
	prompts := filepath.Join(vdir, "prompts")
	prompt := filepath.Join(prompts, "answer.md")
	require.NoError(t, os.Chmod(prompts, 0o755))
	original, err := os.ReadFile(prompt)
	require.NoError(t, err)
	tampered := []byte("TAMPERED-PROMPT " + looptest.BarePhrase + "\n{{.context.question}}\n")
	stage := filepath.Join(filepath.Dir(vdir), ".stage") // outside the variant, same file system

	fd, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	require.NoError(t, err)
	promptsWatch, err := syscall.InotifyAddWatch(fd, prompts, syscall.IN_CLOSE_NOWRITE)
	require.NoError(t, err)
	_, err = syscall.InotifyAddWatch(fd, vdir, syscall.IN_OPEN)
	require.NoError(t, err)
	var wg sync.WaitGroup
	var stop atomic.Bool
	reads := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 4096)
		for {
			n, err := syscall.Read(fd, buf)
			if err != nil || n <= 0 || stop.Load() {
				return
			}
			// chain.toml is read just before the prompt, by the verifier
			// and by any loader alike: when it is opened, the prompt turns
			// tampered (half the time); when the prompt has been read, it
			// turns back. A reader that takes longer between the two
			// files (a loader parsing chain.toml) sees the swap.
			text := []byte(nil)
			for off := 0; off+syscall.SizeofInotifyEvent <= n; {
				ev := (*syscall.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := string(bytes.TrimRight(buf[off+syscall.SizeofInotifyEvent:off+syscall.SizeofInotifyEvent+int(ev.Len)], "\x00"))
				off += syscall.SizeofInotifyEvent + int(ev.Len)
				switch {
				case int(ev.Wd) == promptsWatch && name == "answer.md":
					reads++
					text = original
				case name == "chain.toml" && rng.IntN(2) == 0:
					text = tampered
				}
			}
			// Atomic swaps, as an editor saves: the file is always whole.
			if text != nil && os.WriteFile(stage, text, 0o644) == nil {
				_ = os.Rename(stage, prompt)
			}
		}
	}()
	ran, refused := 0, 0
	for range 250 {
		_, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 1})
		if err != nil {
			require.ErrorContains(t, err, "v0000")
			refused++
			continue
		}
		ran++
	}
	stop.Store(true)
	_, _ = os.ReadFile(prompt) // one more event wakes the watcher, which sees stop
	wg.Wait()
	syscall.Close(fd)
	t.Logf("%d evaluations ran, %d refused the tampered variant; %d reads of the prompt file", ran, refused, reads)
	require.Positive(t, ran, "some evaluations verified the original text while the flipping went on")
	for _, r := range f.LLM.Requests() {
		require.NotContains(t, string(r.Body), "TAMPERED-PROMPT", "the model received the tampered prompt")
	}
}
