// What the run's event log says, read into the views' terms: the code and tests of each round,
// the reviews, the sandbox results, the phases done. Pure functions of the events.

const FENCED_BLOCK = /```[^\n]*\n([\s\S]*?)```/g;
const FILE_MARKER = /^\s*(?:#|\/\/)\s*file:\s*(\S+)\s*\n/;

// The files in one of Alex's or Bob's replies: fenced blocks, each named by its "# file:" line.
// A reply without one is shown whole, so a diff still shows what changed.
export function filesInReply(content) {
  const files = [];
  for (const match of content.matchAll(FENCED_BLOCK)) {
    const named = FILE_MARKER.exec(match[1]);
    const path = named ? named[1] : `block ${files.length + 1}`;
    files.push({ path, content: named ? match[1].slice(named[0].length) : match[1] });
  }
  return files.length ? files : [{ path: "reply", content }];
}

// The code and tests as each review saw them: [{round, code, tests, review}], one per review,
// plus the work in progress after the last one. Alex and Bob may each revise or not in a round
// (the review says what must change), so versions are cut at reviews, not counted per writer;
// a reply's files replace those of the same name and keep the rest.
export function rounds(events) {
  const reviews = reviewsOf(events);
  const versions = [];
  let code = new Map();
  let tests = new Map();
  let pending = false;
  const merged = (files, reply) => new Map([...files, ...filesInReply(reply).map((file) => [file.path, file.content])]);
  const snapshot = (review) => ({
    round: versions.length,
    code: [...code].map(([path, content]) => ({ path, content })),
    tests: [...tests].map(([path, content]) => ({ path, content })),
    review,
  });
  for (const event of events) {
    if (event.type !== "agent.message") continue;
    const { role, action, content } = event.data;
    if (role === "alex" && action === "WriteCode") code = merged(code, content);
    else if (role === "bob" && action === "WriteTest") tests = merged(tests, content);
    else if (action === "ReviewCode" || action === "HumanReview") {
      versions.push(snapshot(reviews[versions.length] || null));
      pending = false;
      continue;
    } else continue;
    pending = true;
  }
  if (pending && versions.length) versions.push(snapshot(null));
  return versions;
}

export function reviewsOf(events) {
  return events
    .filter((event) => event.type === "agent.message" && (event.data.action === "ReviewCode" || event.data.action === "HumanReview"))
    .map((event, round) => {
      const text = event.data.content;
      const verdict = /VERDICT:\s*([A-Z_]+)/i.exec(text);
      const notes = text.split("\n").filter((line) => /^\s*[-*]\s+/.test(line)).map((line) => line.replace(/^\s*[-*]\s+/, ""));
      return { round, role: event.data.role, verdict: verdict ? verdict[1].toUpperCase() : null, notes, text, at: event.created_at };
    });
}

export function sandboxResults(events) {
  return events.filter((event) => event.type === "sandbox.result").map((event) => ({ ...event.data.report, at: event.created_at }));
}

export function finishedPhases(events) {
  return new Set(events.filter((e) => e.type === "run.phase" && e.data.state === "finished").map((e) => e.data.phase));
}

export function latestUsage(events) {
  const usage = events.filter((event) => event.type === "run.usage").pop();
  return usage ? usage.data : null;
}
