// Live refresh: while the page is live, poll the workspace's change stamp
// and reload when it moves (the URL keeps the view's state). ?live=0 stops it.
(function () {
  var stamp = document.querySelector('meta[name="fapo-stamp"]');
  var poll = document.querySelector('meta[name="fapo-poll"]');
  var live = document.getElementById('live');
  if (!stamp || !live || live.dataset.live !== '1') return;
  var every = parseInt(poll && poll.content, 10) || 2000;
  function check() {
    fetch('/api/stamp', {credentials: 'same-origin', cache: 'no-store'})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (j && j.stamp && j.stamp !== stamp.content) { location.reload(); return; }
        setTimeout(check, every);
      })
      .catch(function () { setTimeout(check, every * 5); });
  }
  setTimeout(check, every);
})();

// Selects marked data-autosubmit apply at once (inline handlers are barred
// by the page's content security policy).
document.addEventListener('change', function (e) {
  if (e.target.matches && e.target.matches('select[data-autosubmit]') && e.target.form) e.target.form.submit();
});
