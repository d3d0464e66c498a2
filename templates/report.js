(function () {
  "use strict";
  // Progressive enhancement only: without this script every finding is already listed.
  var controls = document.getElementById("controls");
  if (!controls) {
    return;
  }
  controls.hidden = false;
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.finding"));
  var severityBoxes = Array.prototype.slice.call(controls.querySelectorAll("input[data-severity]"));
  var codeSelect = document.getElementById("filter-code");
  var searchBox = document.getElementById("filter-search");
  var newOnly = document.getElementById("filter-new");
  var shown = document.getElementById("shown");
  var more = document.getElementById("more-models");
  var sections = Array.prototype.map.call(document.querySelectorAll("details.model-body"), function (body) {
    return {
      body: body,
      section: body.parentElement,
      opened: body.open,
      collapsed: more !== null && more.contains(body)
    };
  });
  var total = 0;
  var PARTS = ["td.rule", "td.node", "p.message", "p.fix", "details.members ol"];
  rows.forEach(function (row) {
    total += Number(row.getAttribute("data-count") || 1);
    // What a search matches: rule, severity, layers, op, message, fix, model and state
    // (not the evidence), read from the row so the page does not carry it twice.
    var text = PARTS.map(function (selector) {
      var part = row.querySelector(selector);
      return part === null ? "" : part.textContent;
    });
    text.push(row.getAttribute("data-severity"), row.getAttribute("data-model"),
      row.getAttribute("data-state"));
    row.searchText = text.join(" ").replace(/\s+/g, " ").toLowerCase();
    var message = row.querySelector("p.message");
    row.setAttribute("data-message", message === null ? "" : message.textContent);
  });

  function apply() {
    var severities = {};
    severityBoxes.forEach(function (box) {
      severities[box.getAttribute("data-severity")] = box.checked;
    });
    var code = codeSelect.value;
    var terms = searchBox.value.toLowerCase().split(/\s+/).filter(Boolean);
    var onlyNew = newOnly !== null && newOnly.checked;
    var count = 0;
    rows.forEach(function (row) {
      var text = row.searchText;
      var visible = severities[row.getAttribute("data-severity")] === true &&
        (code === "" || row.getAttribute("data-code") === code) &&
        (!onlyNew || row.getAttribute("data-state") !== "known") &&
        terms.every(function (term) { return text.indexOf(term) !== -1; });
      row.hidden = !visible;
      if (visible) {
        count += Number(row.getAttribute("data-count") || 1);
      }
    });
    Array.prototype.forEach.call(document.querySelectorAll("tbody.findings"), function (body) {
      var empty = body.querySelector("tr.no-match");
      if (empty) {
        empty.hidden = body.querySelector("tr.finding:not([hidden])") !== null;
      }
    });
    var active = terms.length > 0 || code !== "" || onlyNew || severityBoxes.some(function (box) {
      return !box.checked;
    });
    var collapsedMatch = false;
    sections.forEach(function (entry) {
      // A filter opens the sections that match and hides the collapsed ones that do not;
      // cleared, every section is back as the report opened (issue 15: 200 models).
      var match = entry.body.querySelector("tr.finding:not([hidden])") !== null;
      entry.body.open = active ? match || (entry.opened && !entry.collapsed) : entry.opened;
      entry.section.hidden = active && entry.collapsed && !match;
      collapsedMatch = collapsedMatch || (entry.collapsed && match);
    });
    if (more !== null) {
      more.open = active && collapsedMatch;
    }
    shown.textContent = "Showing " + count + " of " + total + " finding" +
      (total === 1 ? "" : "s");
  }

  function sortBy(header) {
    var table = header.closest("table");
    var body = table.tBodies[0];
    var key = header.getAttribute("data-key");
    var numeric = header.getAttribute("data-type") === "number";
    var direction = header.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
    Array.prototype.forEach.call(table.querySelectorAll("th[data-key]"), function (other) {
      other.setAttribute("aria-sort", "none");
    });
    header.setAttribute("aria-sort", direction);
    var sign = direction === "ascending" ? 1 : -1;
    var list = Array.prototype.slice.call(body.querySelectorAll("tr.finding"));
    list.sort(function (a, b) {
      var x = a.getAttribute(key) || "";
      var y = b.getAttribute(key) || "";
      var order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return order * sign || Number(a.getAttribute("data-order")) - Number(b.getAttribute("data-order"));
    });
    list.forEach(function (row) {
      body.appendChild(row);
    });
    var empty = body.querySelector("tr.no-match");
    if (empty) {
      body.appendChild(empty);
    }
  }

  severityBoxes.forEach(function (box) {
    box.addEventListener("change", apply);
  });
  codeSelect.addEventListener("change", apply);
  if (newOnly !== null) {
    newOnly.addEventListener("change", apply);
  }
  searchBox.addEventListener("input", apply);
  Array.prototype.forEach.call(document.querySelectorAll("th[data-key] button"), function (button) {
    button.addEventListener("click", function () {
      sortBy(button.parentElement);
    });
  });
  function openTarget() {
    // A link to a collapsed model (the overview table) opens the sections around it.
    var target = location.hash ? document.getElementById(location.hash.slice(1)) : null;
    for (var node = target; node !== null; node = node.parentElement) {
      if (node.tagName === "DETAILS") {
        node.open = true;
      }
    }
    var body = target !== null ? target.querySelector("details.model-body") : null;
    if (body !== null) {
      body.open = true;
      target.hidden = false;
      target.scrollIntoView();
    }
  }
  window.addEventListener("hashchange", openTarget);
  apply();
  openTarget();
})();
