// Scores a cache-tests results file the way cache-tests.fyi does: a test
// whose dependency failed counts as failed. Prints the totals by kind, then
// each failing required and optimal test with the suite's message.
//
//   node scripts/cache-tests-score.mjs CACHE_TESTS_CHECKOUT RESULTS.json
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

const [suiteDir, resultsFile] = process.argv.slice(2)
const load = (path) => import(pathToFileURL(`${suiteDir}/${path}`))
const suites = (await load('tests/index.mjs')).default
const { determineTestResult, resultTypes } = await load('test-engine/lib/results.mjs')
const results = JSON.parse(readFileSync(resultsFile, 'utf8'))

const totals = { required: [0, 0], optimal: [0, 0], check: [0, 0] }
const failing = { required: [], optimal: [] }
let retries = 0
let setupFailures = 0
for (const suite of suites) {
  for (const test of suite.tests) {
    if (results[test.id] === undefined) continue
    const kind = test.kind ?? 'required'
    const outcome = determineTestResult(suites, test.id, results)
    const passed = outcome === resultTypes.pass || outcome === resultTypes.yes
    totals[kind][1] += 1
    if (passed) totals[kind][0] += 1
    if (outcome === resultTypes.retry) retries += 1
    if (outcome === resultTypes.setup_fail) setupFailures += 1
    if (!passed && failing[kind]) {
      const raw = results[test.id]
      const why = raw === true ? `depends on ${test.depends_on.join(', ')}` : raw.join(': ')
      failing[kind].push(`${test.id}  (${why})`)
    }
  }
}
const score = (kind) => `${totals[kind][0]}/${totals[kind][1]}`
console.log(`required ${score('required')}  optimal ${score('optimal')}  check-yes ${score('check')}  retries ${retries}  setup-failures ${setupFailures}`)
for (const kind of ['required', 'optimal']) {
  for (const line of failing[kind]) console.log(`failing ${kind}: ${line}`)
}
