/* report.html: tabs and the item browser. Reads the JSON in #browser-data; builds the DOM with
   createElement and textContent only (model outputs are untrusted text). No network, no libraries. */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("browser-data").textContent);
  var PAGE = 10;
  var limit = PAGE;
  var OUTCOME_LABELS = {changed: "changed", followed: "followed", not_followed: "not followed"};

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  /* -- tabs ------------------------------------------------------------------------------ */
  /* sections are "tab-NAME", so that #NAME selects a tab without scrolling to it */
  function showTab(name) {
    var tabs = document.querySelectorAll("section.tab");
    if (!document.getElementById("tab-" + name)) { name = "verdicts"; }
    for (var j = 0; j < tabs.length; j++) { tabs[j].style.display = tabs[j].id === "tab-" + name ? "" : "none"; }
    var links = document.querySelectorAll("#tabs a");
    for (var k = 0; k < links.length; k++) {
      links[k].classList.toggle("active", links[k].getAttribute("data-tab") === name);
    }
  }
  window.addEventListener("hashchange", function () { showTab(location.hash.slice(1)); });
  showTab(location.hash.slice(1));

  /* -- filters ------------------------------------------------------------------------------ */
  var f = {
    model: document.getElementById("f-model"), control: document.getElementById("f-control"),
    category: document.getElementById("f-category"), outcome: document.getElementById("f-outcome"),
    text: document.getElementById("f-text")
  };
  var list = document.getElementById("item-list");
  var count = document.getElementById("item-count");
  var more = document.getElementById("more");

  function filters() {
    return {model: f.model.value, control: f.control.value, category: f.category.value,
            outcome: f.outcome.value, text: f.text.value.trim().toLowerCase()};
  }

  function matches(item, q) {
    if (q.category && item.category !== q.category) { return false; }
    if (q.text && item.question.toLowerCase().indexOf(q.text) < 0 && item.id.toLowerCase().indexOf(q.text) < 0) {
      return false;
    }
    if (!q.model && !q.control && !q.outcome) { return true; }
    for (var r = 0; r < item.rows.length; r++) {
      var row = item.rows[r];
      if (q.control && row.control !== q.control) { continue; }
      for (var a = 0; a < row.answers.length; a++) {
        var ans = row.answers[a];
        if (q.model && ans.model !== q.model) { continue; }
        if (!q.outcome || ans.flags.indexOf(q.outcome) >= 0) { return true; }
      }
    }
    return false;
  }

  /* -- one item ------------------------------------------------------------------------------ */
  function optionsLine(item) {
    var p = el("p", "options");
    var letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (var i = 0; i < item.options.length; i++) {
      var opt = el("span", item.options[i] === item.gold ? "option gold" : "option",
                   letters.charAt(i) + ". " + item.options[i]);
      p.appendChild(opt);
    }
    if (!item.options.length) { p.appendChild(el("span", "option gold", "gold: " + item.gold)); }
    return p;
  }

  function goldLine(item) {
    var p = el("p", "golds");
    p.appendChild(el("span", null, "Gold: "));
    p.appendChild(el("b", null, item.gold));
    var names = Object.keys(item.counterfactual || {});
    for (var i = 0; i < names.length; i++) {
      var value = item.counterfactual[names[i]];
      p.appendChild(el("span", "cf", names[i] + " → " + (value === null ? "not transformable" : value)));
    }
    return p;
  }

  function structuresLine(item) {
    var p = el("p", "structures");
    for (var i = 0; i < item.structures.length; i++) {
      var s = el("span", "structure");
      var sw = el("span", "swatch");
      sw.style.borderColor = item.structures[i].colour;
      s.appendChild(sw);
      s.appendChild(document.createTextNode(item.structures[i].name));
      p.appendChild(s);
    }
    return p;
  }

  function windows(item) {
    var seen = [];
    for (var r = 0; r < item.rows.length; r++) {
      for (var s = 0; s < item.rows[r].shown.length; s++) {
        var shown = item.rows[r].shown[s];
        if (shown.images.length && seen.indexOf(shown.window) < 0) { seen.push(shown.window); }
      }
    }
    return seen;
  }

  function presentedCell(row, several) {
    var td = el("td", "presented");
    for (var s = 0; s < row.shown.length; s++) {
      var shown = row.shown[s];
      var box = el("div", "shown");
      if (several) { box.appendChild(el("div", "who", shown.models.join(", ") + ": " + shown.window)); }
      var strip = el("div", "strip");
      for (var i = 0; i < shown.images.length; i++) {
        var im = shown.images[i];
        var fig = el("figure", "thumb");
        var img = el("img", "slice");
        img.src = data.thumbnails[im.src];
        img.width = im.w;
        img.height = im.h;
        img.alt = row.control + ", " + im.plane + " " + im.index;
        img.title = row.control + ": " + im.plane + " slice " + im.index + " (" + shown.window + ")";
        fig.appendChild(img);
        fig.appendChild(el("figcaption", null, im.plane + " " + im.index + " of " + im.count));
        strip.appendChild(fig);
      }
      box.appendChild(strip);
      if (shown.note) { box.appendChild(el("div", "note", shown.note)); }
      td.appendChild(box);
    }
    if (row.note) { td.appendChild(el("div", "note", row.note)); }
    return td;
  }

  function answerCell(ans) {
    var td = el("td", "answer " + (ans.correct ? "right" : "wrong"));
    var head = el("div", "parsed");
    head.appendChild(el("span", "mark", ans.correct ? "✓" : "✗"));
    head.appendChild(el("b", null, ans.parsed === null ? "(no answer parsed)" : ans.parsed));
    td.appendChild(head);
    for (var i = 0; i < ans.flags.length; i++) {
      var label = OUTCOME_LABELS[ans.flags[i]];
      if (label) { td.appendChild(el("span", "flag flag-" + ans.flags[i], label)); }
    }
    if (ans.no_image && !data.blind[ans.model]) { td.appendChild(el("div", "noimage", "no image: " + ans.no_image)); }
    if (ans.error) { td.appendChild(el("div", "error", "error: " + ans.error)); }
    if (ans.raw) {
      var raw = el("div", "raw", ans.raw);
      raw.title = ans.raw;
      td.appendChild(raw);
    }
    return td;
  }

  function card(item, q) {
    var div = el("article", "item-card");
    div.setAttribute("data-id", item.id);
    var head = el("div", "item-head");
    head.appendChild(el("span", "category", item.category));
    head.appendChild(el("code", "item-id", item.id));
    if (item.case) { head.appendChild(el("span", "case", "case " + item.case)); }
    div.appendChild(head);
    div.appendChild(el("p", "question", item.question));
    div.appendChild(optionsLine(item));
    div.appendChild(goldLine(item));
    if (item.structures.length) { div.appendChild(structuresLine(item)); }
    var wins = windows(item);
    if (wins.length) { div.appendChild(el("p", "window", "Window: " + wins.join("; "))); }
    for (var n = 0; n < item.notes.length; n++) { div.appendChild(el("p", "note", item.notes[n])); }

    var models = data.models.filter(function (m) { return !q.model || m === q.model; });
    var table = el("table", "rows");
    var tr = el("tr");
    ["Control", "Presented", "Gold"].forEach(function (h) { tr.appendChild(el("th", null, h)); });
    models.forEach(function (m) {
      var th = el("th", null, m);
      if (data.blind[m]) {
        th.appendChild(el("span", "badge", "reads no image"));
        th.title = data.blind[m];
      }
      tr.appendChild(th);
    });
    table.appendChild(tr);
    for (var r = 0; r < item.rows.length; r++) {
      var row = item.rows[r];
      if (q.control && row.control !== q.control && !row.reference) { continue; }
      var line = el("tr", row.reference ? "reference" : "");
      var name = el("td", "control", row.control);
      if (row.reference) { name.appendChild(el("span", "badge", "reference")); }
      if (row.counterfactual) { name.appendChild(el("span", "badge cf-badge", "counterfactual")); }
      line.appendChild(name);
      line.appendChild(presentedCell(row, row.shown.length > 1));
      line.appendChild(el("td", row.gold_changed ? "gold changed" : "gold", row.gold));
      for (var m = 0; m < models.length; m++) {
        var ans = null;
        for (var a = 0; a < row.answers.length; a++) {
          if (row.answers[a].model === models[m]) { ans = row.answers[a]; }
        }
        line.appendChild(ans ? answerCell(ans) : el("td", "answer none", "–"));
      }
      table.appendChild(line);
    }
    var wrap = el("div", "table-wrap");
    wrap.appendChild(table);
    div.appendChild(wrap);
    return div;
  }

  /* -- the list ------------------------------------------------------------------------------ */
  function render() {
    var q = filters();
    var found = data.items.filter(function (item) { return matches(item, q); });
    count.textContent = found.length + (found.length === 1 ? " item" : " items") +
      (found.length === data.items.length ? "" : " of " + data.items.length);
    count.setAttribute("data-count", String(found.length));
    while (list.firstChild) { list.removeChild(list.firstChild); }
    var n = Math.min(limit, found.length);
    for (var i = 0; i < n; i++) { list.appendChild(card(found[i], q)); }
    if (!found.length) { list.appendChild(el("p", "empty", "No item matches these filters.")); }
    more.style.display = found.length > n ? "" : "none";
    more.textContent = "Show more (" + (found.length - n) + " left)";
  }

  ["model", "control", "category", "outcome"].forEach(function (k) {
    f[k].addEventListener("change", function () { limit = PAGE; render(); });
  });
  f.text.addEventListener("input", function () { limit = PAGE; render(); });
  more.addEventListener("click", function () { limit += PAGE; render(); });
  render();
}());
