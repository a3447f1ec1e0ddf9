// Patron insights dashboard: reads the JSON API with an admin key and draws small SVG bar
// charts, each with a data table beside it. No dependencies, nothing from another origin.
"use strict";

// Where each chart reads from.
const ENDPOINTS = {
  overview: "/v1/insights/overview",
  segments: "/v1/insights/segments",
  tiers: "/v1/insights/tiers",
  funnel: "/v1/insights/referral-funnel",
  expiry: "/v1/insights/points-expiry",
  rewards: "/v1/insights/rewards",
  campaigns: "/v1/campaigns?limit=10",
  liability: "/v1/insights/liability",
  refresh: "/v1/insights/refresh",
};
const KEY_STORAGE = "patron.adminKey";
const SVG = "http://www.w3.org/2000/svg";

const SEGMENT_LABELS = {
  champions: "Champions",
  loyal: "Loyal",
  potential_loyalists: "Potential loyalists",
  new: "New",
  promising: "Promising",
  need_attention: "Need attention",
  at_risk: "At risk",
  cant_lose: "Can't lose",
  hibernating: "Hibernating",
  lost: "Lost",
  prospects: "Prospects",
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function $(selector) {
  return document.querySelector(selector);
}

function setStatus(message, isError) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", Boolean(isError));
}

async function api(path, options) {
  const key = sessionStorage.getItem(KEY_STORAGE);
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: "Bearer " + key, Accept: "application/json" },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && (body.detail || body.title);
    throw new ApiError(response.status, detail || "HTTP " + response.status);
  }
  return body;
}

// --- Formatting --------------------------------------------------------------------------

function formatInteger(value) {
  return new Intl.NumberFormat().format(value);
}

function formatPercent(rate) {
  return new Intl.NumberFormat(undefined, {
    style: "percent",
    maximumFractionDigits: 1,
  }).format(Number(rate));
}

function formatMoney(minorUnits, currency) {
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(minorUnits / 10 ** digits);
}

// --- Overview cards ----------------------------------------------------------------------

function renderCards(overview) {
  const money = (value) => formatMoney(value, overview.currency);
  const cards = [
    ["Members", formatInteger(overview.members)],
    ["New members", formatInteger(overview.new_members)],
    ["Active members", formatInteger(overview.active_members)],
    ["Repeat purchase rate", formatPercent(overview.repeat_purchase_rate)],
    ["Churn rate", formatPercent(overview.churn_rate)],
    ["Average order value", money(overview.average_order_value)],
    ["Customer lifetime value", money(overview.customer_lifetime_value)],
    ["Points outstanding", formatInteger(overview.points_outstanding)],
    ["Points liability", money(overview.points_outstanding_value)],
    ["Points expiring in 30 days", formatInteger(overview.points_expiring_30d)],
    ["Redemption rate", formatPercent(overview.redemption_rate)],
    ["Referral conversion", formatPercent(overview.referral_conversion_rate)],
    ["NPS", overview.nps + " (" + formatInteger(overview.nps_responses) + " answers)"],
  ];
  const list = $("#cards");
  list.replaceChildren();
  for (const [label, value] of cards) {
    const card = document.createElement("div");
    card.className = "card";
    const term = document.createElement("dt");
    term.textContent = label;
    const detail = document.createElement("dd");
    detail.textContent = value;
    card.append(term, detail);
    list.append(card);
  }
}

// --- Charts ------------------------------------------------------------------------------

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [attribute, value] of Object.entries(attributes)) {
    element.setAttribute(attribute, String(value));
  }
  if (text !== undefined) {
    element.textContent = text;
  }
  return element;
}

// Horizontal bars: one row per item, label on the left, the value after the bar.
function barChart(title, bars, alt) {
  const rowHeight = 26;
  const labelWidth = 150;
  const valueWidth = 90;
  const width = 560;
  const height = bars.length * rowHeight + 8;
  const plotWidth = width - labelWidth - valueWidth;
  const max = Math.max(...bars.map((bar) => bar.value), 0) || 1;
  const id = "t" + Math.random().toString(36).slice(2);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-labelledby": id,
  });
  const summary = bars.map((bar) => `${bar.label}: ${bar.display}`).join("; ");
  svg.append(svgElement("title", { id }, `${title}. ${summary}`));
  svg.append(svgElement("line", { class: "axis", x1: labelWidth, y1: 0, x2: labelWidth, y2: height }));
  bars.forEach((bar, index) => {
    const y = index * rowHeight + 4;
    const length = Math.max((bar.value / max) * plotWidth, bar.value > 0 ? 2 : 0);
    const group = svgElement("g", {});
    group.append(svgElement("title", {}, `${bar.label}: ${bar.display}`));
    group.append(
      svgElement("text", { x: labelWidth - 8, y: y + 15, "text-anchor": "end" }, bar.label),
    );
    group.append(
      svgElement("rect", {
        class: alt ? "bar alt" : "bar",
        x: labelWidth,
        y,
        width: length,
        height: rowHeight - 8,
        rx: 2,
      }),
    );
    group.append(
      svgElement("text", { class: "value", x: labelWidth + length + 6, y: y + 15 }, bar.display),
    );
    svg.append(group);
  });
  return svg;
}

// Vertical columns, for a time axis (expiry months).
function columnChart(title, bars) {
  const width = Math.max(560, bars.length * 64 + 60);
  const height = 240;
  const bottom = 40;
  const top = 20;
  const slot = (width - 40) / bars.length;
  const max = Math.max(...bars.map((bar) => bar.value), 0) || 1;
  const id = "t" + Math.random().toString(36).slice(2);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-labelledby": id,
  });
  const summary = bars.map((bar) => `${bar.label}: ${bar.display}`).join("; ");
  svg.append(svgElement("title", { id }, `${title}. ${summary}`));
  svg.append(
    svgElement("line", { class: "axis", x1: 20, y1: height - bottom, x2: width - 20, y2: height - bottom }),
  );
  bars.forEach((bar, index) => {
    const barHeight = Math.max(((height - bottom - top) * bar.value) / max, bar.value > 0 ? 2 : 0);
    const x = 20 + index * slot + slot * 0.15;
    const group = svgElement("g", {});
    group.append(svgElement("title", {}, `${bar.label}: ${bar.display}`));
    group.append(
      svgElement("rect", {
        class: "bar",
        x,
        y: height - bottom - barHeight,
        width: slot * 0.7,
        height: barHeight,
        rx: 2,
      }),
    );
    group.append(
      svgElement(
        "text",
        { class: "value", x: x + slot * 0.35, y: height - bottom - barHeight - 5, "text-anchor": "middle" },
        bar.display,
      ),
    );
    group.append(
      svgElement("text", { x: x + slot * 0.35, y: height - bottom + 16, "text-anchor": "middle" }, bar.label),
    );
    svg.append(group);
  });
  return svg;
}

function dataTable(headings, bars) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  headings.forEach((heading, index) => {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = heading;
    if (index > 0) cell.className = "num";
    head.append(cell);
  });
  const body = table.createTBody();
  for (const bar of bars) {
    const row = body.insertRow();
    const label = document.createElement("th");
    label.scope = "row";
    label.textContent = bar.label;
    row.append(label);
    // A bar may carry several figures (the liability roll-forward's columns).
    for (const figure of bar.cells || [bar.display]) {
      const value = row.insertCell();
      value.className = "num";
      value.textContent = figure;
    }
  }
  return table;
}

function showChart(id, { title, bars, headings, kind, alt, emptyNote }) {
  const figure = document.getElementById(id);
  const plot = figure.querySelector(".plot");
  const table = figure.querySelector(".table");
  plot.replaceChildren();
  table.replaceChildren();
  figure.querySelector("details").hidden = bars.length === 0;
  if (bars.length === 0) {
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = emptyNote || "No data yet.";
    plot.append(note);
    figure.dataset.state = "empty";
    return;
  }
  plot.append(kind === "columns" ? columnChart(title, bars) : barChart(title, bars, alt));
  table.append(dataTable(headings, bars));
  figure.dataset.state = "ready";
}

function chartFailed(id, error) {
  const figure = document.getElementById(id);
  const note = document.createElement("p");
  note.className = "empty";
  note.textContent = "Could not load: " + error.message;
  figure.querySelector(".plot").replaceChildren(note);
  figure.dataset.state = "error";
}

// Members per tier, from the list the tiers endpoint returns ({key, name, members}).
function tierBars(body) {
  const tiers = Array.isArray(body) ? body : body.data || [];
  return tiers.map((tier) => ({
    label: tier.name || tier.key,
    value: tier.members || 0,
    display: formatInteger(tier.members || 0),
  }));
}

const COUPON_STATUSES = ["active", "used", "expired", "void"];

// Coupons per status; the caption carries the use rate (used out of issued and not voided).
function couponChart(body) {
  const coupons = body.coupons;
  document.querySelector("#chart-coupons .use-rate").textContent =
    "use rate " + formatPercent(coupons.use_rate);
  return {
    title: "Coupons by status",
    headings: ["Status", "Coupons"],
    bars: coupons.issued === 0 ? [] : COUPON_STATUSES.map((status) => ({
      label: status,
      value: coupons[status],
      display: formatInteger(coupons[status]),
    })),
    emptyNote: "No coupons yet.",
  };
}

// --- Campaigns ---------------------------------------------------------------------------

const CAMPAIGN_WINDOW_DAYS = 30;
const VERDICTS = {
  positive: "it worked",
  negative: "it did harm",
  too_early_to_tell: "too early to tell",
};

function formatPoints(rate) {
  // A difference of rates, in percentage points.
  const points = Number(rate) * 100;
  return (points > 0 ? "+" : "") + points.toFixed(1) + " pts";
}

function campaignCost(cost) {
  const parts = [];
  if (cost.points_granted) parts.push(formatInteger(cost.points_granted) + " points");
  if (cost.coupons_issued) {
    parts.push(`${formatInteger(cost.coupons_used)}/${formatInteger(cost.coupons_issued)} coupons used`);
  }
  return parts.join(", ") || "nothing given";
}

// Per campaign: a bar for each group's return rate, then the lift drawn as its 95% interval
// around a dashed zero line (an interval that crosses it is "too early to tell").
function campaignChart(campaigns) {
  const labelWidth = 170;
  const valueWidth = 190;
  const width = 760;
  const plotWidth = width - labelWidth - valueWidth;
  const rowHeight = 24;
  const blockHeight = rowHeight * 3 + 22;
  const height = campaigns.length * blockHeight + 4;
  const rateMax = Math.max(
    ...campaigns.flatMap(({ results }) => [
      Number(results.treated.return_rate || 0),
      Number(results.holdout.return_rate || 0),
    ]),
    0,
  ) || 1;
  const liftMax = Math.max(
    ...campaigns.flatMap(({ results }) =>
      (results.lift.return_rate_ci95 || []).map((bound) => Math.abs(Number(bound))),
    ),
    0,
  ) || 1;
  const id = "t" + Math.random().toString(36).slice(2);
  const svg = svgElement("svg", {
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-labelledby": id,
  });
  const summary = campaigns
    .map(({ campaign, results }) => `${campaign.name}: ${VERDICTS[results.verdict]}`)
    .join("; ");
  svg.append(svgElement("title", { id }, `Campaign results. ${summary}`));
  campaigns.forEach(({ campaign, results }, index) => {
    const top = index * blockHeight;
    const group = svgElement("g", {});
    group.append(
      svgElement("text", { class: "campaign-name", x: 0, y: top + 14 }, campaign.name),
    );
    group.append(
      svgElement(
        "text",
        { class: "value", x: labelWidth, y: top + 14 },
        `${VERDICTS[results.verdict]} · cost: ${campaignCost(results.cost)}`,
      ),
    );
    const rows = [
      ["Treated", results.treated, ""],
      ["Held out", results.holdout, " alt"],
    ];
    rows.forEach(([label, figures, alt], row) => {
      const y = top + 20 + row * rowHeight;
      const rate = Number(figures.return_rate || 0);
      const length = Math.max((rate / rateMax) * plotWidth, rate > 0 ? 2 : 0);
      const display = figures.return_rate === null
        ? "no members"
        : `${formatPercent(figures.return_rate)} of ${formatInteger(figures.members)}`;
      group.append(svgElement("text", { x: labelWidth - 8, y: y + 14, "text-anchor": "end" }, label));
      group.append(
        svgElement("rect", { class: "bar" + alt, x: labelWidth, y, width: length, height: rowHeight - 8, rx: 2 }),
      );
      group.append(svgElement("text", { class: "value", x: labelWidth + length + 6, y: y + 14 }, display));
    });
    const y = top + 20 + 2 * rowHeight + 8;
    const zero = labelWidth + plotWidth / 2;
    const scale = (value) => zero + (Number(value) / liftMax) * (plotWidth / 2);
    group.append(svgElement("text", { x: labelWidth - 8, y: y + 4, "text-anchor": "end" }, "Lift (95%)"));
    group.append(svgElement("line", { class: "ci-zero", x1: zero, y1: y - 8, x2: zero, y2: y + 8 }));
    const interval = results.lift.return_rate_ci95;
    if (interval) {
      group.append(
        svgElement("line", { class: "ci", x1: scale(interval[0]), y1: y, x2: scale(interval[1]), y2: y }),
      );
      group.append(svgElement("circle", { class: "ci-point", cx: scale(results.lift.return_rate), cy: y, r: 4 }));
      group.append(
        svgElement(
          "text",
          { class: "value", x: labelWidth + plotWidth + 8, y: y + 4 },
          `${formatPoints(results.lift.return_rate)} [${formatPoints(interval[0])}, ${formatPoints(interval[1])}]`,
        ),
      );
    } else {
      group.append(
        svgElement("text", { class: "value", x: labelWidth + plotWidth + 8, y: y + 4 }, "no held-out group"),
      );
    }
    svg.append(group);
  });
  return svg;
}

function campaignTable(campaigns) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  ["Campaign", "Treated", "Held out", "Lift", "95% interval", "Verdict", "Cost"].forEach((heading, index) => {
    const cell = document.createElement("th");
    cell.scope = "col";
    cell.textContent = heading;
    if (index > 0 && index < 5) cell.className = "num";
    head.append(cell);
  });
  const body = table.createTBody();
  for (const { campaign, results } of campaigns) {
    const row = body.insertRow();
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = campaign.name;
    row.append(name);
    const interval = results.lift.return_rate_ci95;
    const cells = [
      results.treated.return_rate === null ? "–" : formatPercent(results.treated.return_rate),
      results.holdout.return_rate === null ? "–" : formatPercent(results.holdout.return_rate),
      results.lift.return_rate === null ? "–" : formatPoints(results.lift.return_rate),
      interval ? `${formatPoints(interval[0])} to ${formatPoints(interval[1])}` : "–",
      VERDICTS[results.verdict],
      campaignCost(results.cost),
    ];
    cells.forEach((text, index) => {
      const cell = row.insertCell();
      if (index < 4) cell.className = "num";
      cell.textContent = text;
    });
  }
  return table;
}

async function loadCampaigns() {
  const figure = $("#chart-campaigns");
  const plot = figure.querySelector(".plot");
  const table = figure.querySelector(".table");
  try {
    const listed = await api(ENDPOINTS.campaigns);
    const campaigns = await Promise.all(
      listed.data.map(async (campaign) => ({
        campaign,
        results: await api(
          `/v1/campaigns/${campaign.id}/results?window_days=${CAMPAIGN_WINDOW_DAYS}`,
        ),
      })),
    );
    const shown = campaigns.filter(({ results }) => results.treated.members + results.holdout.members > 0);
    plot.replaceChildren();
    table.replaceChildren();
    figure.querySelector("details").hidden = shown.length === 0;
    if (shown.length === 0) {
      const note = document.createElement("p");
      note.className = "empty";
      note.textContent = "No campaign has targeted anyone yet.";
      plot.append(note);
      figure.dataset.state = "empty";
      return;
    }
    plot.append(campaignChart(shown));
    table.append(campaignTable(shown));
    figure.dataset.state = "ready";
  } catch (error) {
    chartFailed("chart-campaigns", error);
    throw error;
  }
}

// --- Loading -----------------------------------------------------------------------------

function periodQuery() {
  const from = $("#from").value;
  const to = $("#to").value;
  const query = new URLSearchParams();
  if (from) query.set("from", from + "T00:00:00Z");
  if (to) query.set("to", to + "T00:00:00Z");
  return "?" + query.toString();
}

async function loadChart(id, load) {
  try {
    showChart(id, await load());
  } catch (error) {
    chartFailed(id, error);
    throw error;
  }
}

async function loadAll() {
  document.body.dataset.state = "loading";
  setStatus("Loading…");
  for (const figure of document.querySelectorAll(".chart")) {
    figure.dataset.state = "loading";
  }
  const period = periodQuery();
  const jobs = [
    api(ENDPOINTS.overview + period).then(renderCards),
    loadChart("chart-segments", async () => {
      const segments = await api(ENDPOINTS.segments);
      return {
        title: "Members per segment",
        headings: ["Segment", "Members"],
        bars: segments.map((s) => ({
          label: SEGMENT_LABELS[s.segment] || s.segment,
          value: s.members,
          display: formatInteger(s.members),
        })),
      };
    }),
    loadChart("chart-revenue", async () => {
      const segments = await api(ENDPOINTS.segments);
      return {
        title: "Share of revenue per segment",
        headings: ["Segment", "Share of revenue"],
        alt: true,
        bars: segments.map((s) => ({
          label: SEGMENT_LABELS[s.segment] || s.segment,
          value: Number(s.share_of_revenue),
          display: formatPercent(s.share_of_revenue),
        })),
      };
    }),
    loadChart("chart-tiers", async () => {
      const body = await api(ENDPOINTS.tiers);
      return {
        title: "Members per tier",
        headings: ["Tier", "Members"],
        bars: tierBars(body),
        emptyNote: "No tiers yet.",
      };
    }),
    loadChart("chart-funnel", async () => {
      const body = await api(ENDPOINTS.funnel + period);
      return {
        title: "Referral funnel",
        headings: ["Stage", "Referrals"],
        bars: body.data.map((stage) => ({
          label: stage.stage,
          value: stage.count,
          display: formatInteger(stage.count),
        })),
        emptyNote: "No referrals yet.",
      };
    }),
    loadChart("chart-rewards", async () => {
      const body = await api(ENDPOINTS.rewards);
      return {
        title: "Points spent per reward",
        headings: ["Reward", "Points spent"],
        bars: body.data.map((reward) => ({
          label: reward.name,
          value: reward.points_spent,
          display: formatInteger(reward.points_spent),
        })),
        emptyNote: "No redemptions yet.",
      };
    }),
    loadChart("chart-coupons", async () => couponChart(await api(ENDPOINTS.rewards))),
    loadCampaigns(),
    loadChart("chart-expiry", async () => {
      const body = await api(ENDPOINTS.expiry);
      return {
        title: "Points outstanding by expiry month",
        headings: ["Expires", "Points"],
        kind: "columns",
        bars: body.data.map((month) => ({
          label: month.month === "never" ? "Never" : month.month,
          value: month.points,
          display: formatInteger(month.points),
        })),
        emptyNote: "No points outstanding.",
      };
    }),
    loadChart("chart-liability", async () => {
      // The last 12 months, whatever the period above: a roll-forward needs whole months.
      const body = await api(ENDPOINTS.liability);
      $("#liability-breakage").textContent =
        "Expected breakage: " + formatPercent(body.breakage_rate) + " (" +
        body.breakage_basis.description + ").";
      return {
        title: "Points liability at each month's end",
        headings: ["Month", "Opening", "Earned", "Redeemed", "Expired", "Adjusted", "Closing",
                   "Value"],
        kind: "columns",
        bars: body.rows.map((row) => ({
          label: row.period_start.slice(0, 7),
          value: row.closing,
          display: formatInteger(row.closing),
          cells: [row.opening, row.earned, row.redeemed, row.expired, row.adjusted, row.closing]
            .map(formatInteger)
            .concat([formatMoney(row.closing_value, body.currency)]),
        })),
      };
    }),
  ];
  const results = await Promise.allSettled(jobs);
  const failure = results.find((result) => result.status === "rejected");
  if (failure) {
    const error = failure.reason;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      sessionStorage.removeItem(KEY_STORAGE);
      lock("That key was refused (it must be an admin key): " + error.message);
      return;
    }
    setStatus("Some figures could not be loaded: " + error.message, true);
    document.body.dataset.state = "error";
    return;
  }
  setStatus("Updated " + new Date().toLocaleString() + ".");
  document.body.dataset.state = "ready";
}

function unlock() {
  $("#key-form").hidden = true;
  $("#period-form").hidden = false;
  $("#overview").hidden = false;
  $("#charts").hidden = false;
  return loadAll();
}

function lock(message) {
  $("#key-form").hidden = false;
  $("#period-form").hidden = true;
  $("#overview").hidden = true;
  $("#charts").hidden = true;
  document.body.dataset.state = "locked";
  setStatus(message || "", Boolean(message));
  $("#key").focus();
}

function isoDate(date) {
  return date.toISOString().slice(0, 10);
}

function init() {
  const today = new Date();
  const tomorrow = new Date(today.getTime() + 86400000);
  $("#to").value = isoDate(tomorrow);
  $("#from").value = isoDate(new Date(tomorrow.getTime() - 30 * 86400000));

  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORAGE, key);
    $("#key").value = "";
    unlock();
  });
  $("#forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    lock("Key forgotten.");
  });
  $("#period-form").addEventListener("submit", (event) => {
    event.preventDefault();
    loadAll();
  });
  $("#refresh").addEventListener("click", async () => {
    setStatus("Recomputing segments and lifecycle…");
    try {
      const result = await api(ENDPOINTS.refresh, { method: "POST" });
      setStatus(`Recomputed ${formatInteger(result.members)} members in ${result.duration_ms} ms.`);
      await loadAll();
    } catch (error) {
      setStatus("Refresh failed: " + error.message, true);
    }
  });

  if (sessionStorage.getItem(KEY_STORAGE)) {
    unlock();
  } else {
    lock();
  }
}

document.addEventListener("DOMContentLoaded", init);
