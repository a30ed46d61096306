#!/usr/bin/env node
/**
 * Web Editor compatibility check for the openeo-deepfeatures process JSON.
 *
 * The openEO Web Editor parses and validates process graphs with @openeo/js-processgraphs
 * (registry from @openeo/js-commons). This script does the same, offline, for:
 *
 *   spec     our native process descriptions   (openeo_deepfeatures/processes/specs/*.json)
 *   udp      our user-defined processes         (process_graphs/*.json)
 *   example  example process graphs             (process_graphs/examples/*.json)
 *   process  the predefined openEO processes    (only with --check-processes)
 *
 * Each file is checked against the project's schema of openEO API 1.2 process descriptions
 * (openeo_deepfeatures/processes/process.schema.json, the one the Python plugin uses too); every parameter and return
 * schema must be a valid JSON Schema with known subtypes (meta/subtype-schemas.json). Every
 * file with a process graph (UDPs, examples, some predefined processes) is then parsed and
 * validated by js-processgraphs against a ProcessRegistry that holds, like the Web Editor's:
 *   backend       the predefined openEO processes (--processes DIR: DIR/*.json, DIR/proposals/*.json)
 *                 and our native specs (left out with --portable),
 *   user          our UDPs (what `namespace: null` finds first),
 *   deepfeatures  our UDPs and (unless --portable) native specs (`namespace: "deepfeatures"`,
 *                 see --namespace).
 * Callbacks are validated too; beyond the library, every `from_parameter` must name a
 * declared parameter (of the UDP, or of the callback or an enclosing graph) and graphs must
 * be acyclic.
 *
 * Output: one JSON line per file on stdout
 *   {"file", "kind", "id", "ok", "errors": [{"code", "message", "path"?, "node"?}], "warnings", "uses"}
 * and a summary on stderr. Exit status: 0 all files pass, 1 a file fails, 2 usage or internal error.
 *
 * Usage: node webeditor/validate.mjs --processes ../shared/openeo-processes
 *          [--specs DIR] [--udps DIR] [--examples DIR] [--subtypes FILE]
 *          [--namespace deepfeatures] [--portable] [--check-processes]
 */

import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createRequire } from 'node:module';

import Ajv from 'ajv';
import commons from '@openeo/js-commons';
import processgraphs from '@openeo/js-processgraphs';

const { ProcessRegistry } = commons;
const { ProcessGraph, ErrorList } = processgraphs;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const require = createRequire(import.meta.url);
const MAX_SCHEMA_ERRORS = 10;
const DRAFT_07 = 'http://json-schema.org/draft-07/schema#';

class UsageError extends Error {}

// ---------------------------------------------------------------- command line

function parseCommandLine(argv) {
	let parsed;
	try {
		parsed = parseArgs({
			args: argv,
			options: {
				processes: { type: 'string', multiple: true },
				specs: { type: 'string' },
				udps: { type: 'string' },
				examples: { type: 'string' },
				subtypes: { type: 'string' },
				namespace: { type: 'string', default: 'deepfeatures' },
				portable: { type: 'boolean', default: false },
				'check-processes': { type: 'boolean', default: false },
				help: { type: 'boolean', short: 'h', default: false },
			},
			strict: true,
			allowPositionals: false,
		}).values;
	} catch (error) {
		throw new UsageError(error.message);
	}
	if (parsed.help) {
		return { help: true };
	}
	if (!parsed.processes || parsed.processes.length === 0) {
		throw new UsageError('--processes DIR is required (the openEO process specs, e.g. ../shared/openeo-processes)');
	}
	for (const dir of parsed.processes) {
		requireDir(dir, '--processes');
	}
	const udps = parsed.udps ?? path.join(ROOT, 'process_graphs');
	const options = {
		processes: parsed.processes,
		specs: parsed.specs ?? path.join(ROOT, 'openeo_deepfeatures', 'processes', 'specs'),
		udps,
		examples: parsed.examples ?? path.join(udps, 'examples'),
		subtypes: parsed.subtypes ?? defaultSubtypes(parsed.processes),
		namespace: parsed.namespace,
		portable: parsed.portable,
		checkProcesses: parsed['check-processes'],
	};
	// Folders named explicitly must exist; the default examples folder may be absent.
	for (const key of ['specs', 'udps', 'examples']) {
		if (parsed[key] !== undefined) {
			requireDir(parsed[key], `--${key}`);
		}
	}
	if (!existsSync(options.subtypes)) {
		throw new UsageError(`--subtypes: no such file: ${options.subtypes}`);
	}
	if (!/^\w+$/.test(options.namespace) || ['backend', 'user'].includes(options.namespace)) {
		throw new UsageError(`--namespace must be a word other than 'backend' and 'user', got '${options.namespace}'`);
	}
	return options;
}

function requireDir(dir, flag) {
	if (!existsSync(dir) || !statSync(dir).isDirectory()) {
		throw new UsageError(`${flag}: no such directory: ${dir}`);
	}
}

function defaultSubtypes(processDirs) {
	for (const dir of processDirs) {
		const candidate = path.join(dir, 'meta', 'subtype-schemas.json');
		if (existsSync(candidate)) {
			return candidate;
		}
	}
	return require.resolve('@openeo/js-processgraphs/assets/subtype-schemas.json');
}

function jsonFiles(dir) {
	if (!existsSync(dir)) {
		return [];
	}
	return readdirSync(dir)
		.filter(name => name.endsWith('.json'))
		.sort()
		.map(name => path.join(dir, name))
		.filter(file => statSync(file).isFile());
}

function displayPath(file) {
	const relative = path.relative(ROOT, file);
	return relative.startsWith('..') || path.isAbsolute(relative) ? path.resolve(file) : relative;
}

// ---------------------------------------------------------------- helpers

function isObject(value) {
	return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function toError(error, extra = {}) {
	if (error instanceof ErrorList) {
		return error.getAll().map(e => toError(e, extra)).flat();
	}
	const out = {
		code: (error && (error.code || error.name)) || 'InternalError',
		message: (error && error.message) || String(error),
	};
	// js-processgraphs has no message text for its "...Callback" codes: say where it happened.
	if (error && error.message === error.code && isObject(error.variables) && error.code.endsWith('Callback')) {
		const { process_id: processId, node_id: nodeId } = error.variables;
		out.message = `${error.code.slice(0, -'Callback'.length)} in the callback of process '${processId}' (node '${nodeId}').`;
	}
	if (error && typeof error.node === 'string') {
		out.node = error.node;
	}
	return [Object.assign(out, extra)];
}

function loadJson(file) {
	return JSON.parse(readFileSync(file, 'utf8'));
}

// ---------------------------------------------------------------- schema checks

class SchemaChecks {
	constructor(subtypesFile) {
		this.ajv = new Ajv({ allErrors: true, jsonPointers: true, schemaId: 'auto', format: 'full' });
		this.ajv.addFormat('commonmark', () => true);
		const schema = loadJson(path.join(ROOT, 'openeo_deepfeatures', 'processes', 'process.schema.json'));
		this.ajv.addSchema(schema, 'openeo-process');
		this.validators = {
			process: this.ajv.getSchema('openeo-process#/definitions/predefined_process'),
			spec: this.ajv.getSchema('openeo-process#/definitions/predefined_process'),
			udp: this.ajv.getSchema('openeo-process#/definitions/user_defined_process'),
			example: this.ajv.getSchema('openeo-process#/definitions/process_graph_with_metadata'),
		};
		// A separate instance to check data type schemas against the JSON Schema meta-schema.
		this.meta = new Ajv({ allErrors: true, jsonPointers: true, schemaId: 'auto' });
		this.subtypes = loadJson(subtypesFile).definitions;
	}

	/** Errors of `document` against the openEO API schema for its kind. */
	apiSchema(kind, document) {
		const validate = this.validators[kind];
		if (validate(document)) {
			return [];
		}
		const seen = new Set();
		const errors = [];
		for (const e of conciseSchemaErrors(validate.errors)) {
			let message = e.message;
			if (e.keyword === 'additionalProperties') {
				message += ` ('${e.params.additionalProperty}')`;
			} else if (e.keyword === 'enum') {
				message += ` (${JSON.stringify(e.params.allowedValues)})`;
			}
			const where = e.dataPath || '/';
			const key = `${where} ${message}`;
			if (!seen.has(key)) {
				seen.add(key);
				errors.push({ code: 'ProcessSchemaInvalid', message: `${where}: ${message}`, path: where });
			}
		}
		if (errors.length > MAX_SCHEMA_ERRORS) {
			const more = errors.length - MAX_SCHEMA_ERRORS;
			errors.length = MAX_SCHEMA_ERRORS;
			errors.push({ code: 'ProcessSchemaInvalid', message: `... and ${more} more schema errors`, path: '/' });
		}
		return errors;
	}

	/**
	 * Errors in the parameter and return data types: valid JSON Schema, known subtypes.
	 * Data types with API schema errors (`faulted`: their json pointers) are not reported twice.
	 */
	dataTypes(document, faulted = []) {
		const errors = [];
		for (const [where, schema] of dataTypeSchemas(document, '')) {
			if (faulted.some(p => p === where || p.startsWith(where + '/'))) {
				continue;
			}
			const elements = Array.isArray(schema) ? schema.map((s, i) => [`${where}/${i}`, s]) : [[where, schema]];
			for (const [at, element] of elements) {
				if (!isObject(element)) {
					continue; // the API schema check reports these
				}
				const copy = Object.assign({ $schema: DRAFT_07 }, element);
				if (!this.meta.validateSchema(copy)) {
					for (const e of this.meta.errors) {
						errors.push({
							code: 'DataTypeInvalid',
							message: `${at}${e.dataPath}: not a valid JSON Schema: ${e.message}`,
							path: at + e.dataPath,
						});
					}
				}
				errors.push(...this.subtypeErrors(element, at));
			}
		}
		return errors;
	}

	subtypeErrors(schema, at) {
		const errors = [];
		const visit = (node, where) => {
			if (Array.isArray(node)) {
				node.forEach((v, i) => visit(v, `${where}/${i}`));
				return;
			}
			if (!isObject(node)) {
				return;
			}
			if (typeof node.subtype === 'string') {
				const definition = this.subtypes[node.subtype];
				if (!definition) {
					errors.push({
						code: 'DataTypeInvalid',
						message: `${where}: unknown subtype '${node.subtype}'`,
						path: where,
					});
				} else if (typeof node.type === 'string' && definition.type && node.type !== definition.type) {
					errors.push({
						code: 'DataTypeInvalid',
						message: `${where}: subtype '${node.subtype}' needs type '${definition.type}', not '${node.type}'`,
						path: where,
					});
				}
			}
			for (const [key, value] of Object.entries(node)) {
				// Callback parameters are visited as data types of their own.
				if (key !== 'parameters' && typeof value === 'object') {
					visit(value, `${where}/${key}`);
				}
			}
		};
		visit(schema, at);
		return errors;
	}
}

const COMBINATORS = new Set(['oneOf', 'anyOf', 'if']);

/**
 * ajv reports, for a value that fits none of the alternatives of an anyOf/oneOf, every
 * alternative's complaint at every level. Keep what points at the fault: drop type and
 * combinator errors of a value when errors deeper inside it exist, and combinator summaries
 * when other errors at the same place exist.
 */
function conciseSchemaErrors(errors) {
	const isInside = (inner, outer) => inner.startsWith(outer + '/') || (outer === '' && inner !== '');
	return errors.filter(e => {
		if (e.keyword !== 'type' && !COMBINATORS.has(e.keyword)) {
			return true;
		}
		if (errors.some(other => isInside(other.dataPath, e.dataPath))) {
			return false;
		}
		return !(COMBINATORS.has(e.keyword) && errors.some(other => other.dataPath === e.dataPath && !COMBINATORS.has(other.keyword)));
	});
}

/** [json pointer, schema] of every parameter and return value, callbacks' included. */
function* dataTypeSchemas(described, where) {
	if (Array.isArray(described.parameters)) {
		for (const [i, parameter] of described.parameters.entries()) {
			if (!isObject(parameter) || parameter.schema === undefined) {
				continue;
			}
			const at = `${where}/parameters/${i}/schema`;
			yield [at, parameter.schema];
			const elements = Array.isArray(parameter.schema) ? parameter.schema.map((s, j) => [`${at}/${j}`, s]) : [[at, parameter.schema]];
			for (const [elementAt, element] of elements) {
				if (isObject(element)) {
					yield* dataTypeSchemas(element, elementAt);
				}
			}
		}
	}
	if (isObject(described.returns) && described.returns.schema !== undefined) {
		yield [`${where}/returns/schema`, described.returns.schema];
	}
}

// ---------------------------------------------------------------- process graphs

/** Where a node sits: its id, prefixed by the ids of the nodes whose callbacks hold it. */
function nodePath(node) {
	const ids = [node.id];
	let parent = node.getProcessGraph() ? node.getProcessGraph().getParentNode() : null;
	while (parent) {
		ids.unshift(parent.id);
		parent = parent.getProcessGraph() ? parent.getProcessGraph().getParentNode() : null;
	}
	return ids.join('/');
}

/** js-processgraphs' ProcessGraph, with errors that name the node they come from. */
class CheckedProcessGraph extends ProcessGraph {
	createProcessGraphInstance(process) {
		const pg = new CheckedProcessGraph(process, this.processRegistry, this.getJsonSchemaValidator());
		return this.copyProcessGraphInstanceProperties(pg);
	}

	async validateNode(node) {
		try {
			return await super.validateNode(node);
		} catch (error) {
			if (isObject(error) && error.node === undefined) {
				error.node = nodePath(node);
			}
			throw error;
		}
	}
}

function* graphTree(pg) {
	yield pg;
	for (const child of pg.children) {
		yield* graphTree(child);
	}
}

/** Names a `from_parameter` may use in `pg`: its callback parameters and those of all enclosing graphs. */
function parameterScope(pg, topParameters) {
	const names = new Set(topParameters);
	for (let current = pg; current; current = current.getParent()) {
		for (const p of current.getCallbackParameters() || []) {
			names.add(p.name);
		}
	}
	return names;
}

function parameterErrors(root, topParameters, registry) {
	const errors = [];
	for (const pg of graphTree(root)) {
		const parentNode = pg.getParentNode();
		if (parentNode && registry.get(parentNode.process_id, parentNode.namespace) === null) {
			continue; // callback of an unknown process: reported as ProcessUnsupported
		}
		const scope = parameterScope(pg, topParameters);
		for (const node of Object.values(pg.getNodes())) {
			for (const ref of node.getRefs()) {
				if (typeof ref.from_parameter === 'string' && !scope.has(ref.from_parameter)) {
					const known = [...scope].sort().join(', ') || 'none';
					errors.push({
						code: 'ProcessGraphParameterMissing',
						message: `Node '${nodePath(node)}' (process: ${node.process_id}) references parameter '${ref.from_parameter}', which is not defined here (defined: ${known}).`,
						node: nodePath(node),
					});
				}
			}
		}
	}
	return errors;
}

function cycleErrors(root) {
	const errors = [];
	for (const pg of graphTree(root)) {
		const nodes = Object.values(pg.getNodes());
		const pending = new Map(nodes.map(n => [n.id, n.getPreviousNodes().length]));
		const ready = nodes.filter(n => pending.get(n.id) === 0);
		let done = 0;
		while (ready.length > 0) {
			const node = ready.pop();
			done++;
			for (const next of node.getNextNodes()) {
				pending.set(next.id, pending.get(next.id) - 1);
				if (pending.get(next.id) === 0) {
					ready.push(next);
				}
			}
		}
		if (done < nodes.length) {
			const stuck = [...pending].filter(([, n]) => n > 0).map(([id]) => id).sort();
			const where = pg.getParentNode() ? ` in the callback of node '${nodePath(pg.getParentNode())}'` : '';
			errors.push({
				code: 'ProcessGraphCycle',
				message: `The nodes ${stuck.map(id => `'${id}'`).join(', ')}${where} never run: they wait on each other in a cycle (or on nodes that do).`,
			});
		}
	}
	return errors;
}

function usedProcesses(root, registry) {
	const uses = new Set();
	const warnings = [];
	for (const pg of graphTree(root)) {
		for (const node of Object.values(pg.getNodes())) {
			const spec = registry.get(node.process_id, node.namespace);
			uses.add(`${node.process_id}@${spec ? spec.namespace : '?'}`);
			if (spec && spec.experimental) {
				warnings.push(`node '${nodePath(node)}' uses the experimental process '${node.process_id}'`);
			}
		}
	}
	return { uses: [...uses].sort(), warnings: [...new Set(warnings)] };
}

async function validateGraph(document, registry) {
	const pg = new CheckedProcessGraph(structuredClone(document), registry);
	const errors = [];
	const top = await pg.validate(false);
	errors.push(...toError(top));
	if (!pg.parsed) {
		return { errors, uses: [], warnings: [] };
	}
	// Callbacks: js-processgraphs validates them through their parent's argument schema and
	// stops at the first error; report their own errors, and validate any it did not reach.
	for (const child of graphTree(pg)) {
		if (child === pg) {
			continue;
		}
		if (!child.validated) {
			await child.validate(false);
		}
		for (const error of child.getErrors().getAll()) {
			errors.push(...toError(error));
		}
	}
	const parameters = Array.isArray(document.parameters)
		? document.parameters.filter(isObject).map(p => p.name)
		: [];
	errors.push(...parameterErrors(pg, parameters, registry));
	errors.push(...cycleErrors(pg));
	const { uses, warnings } = usedProcesses(pg, registry);
	// An unknown process is reported again by each node that takes its result: keep the first.
	const seen = new Set();
	const unique = errors.filter(e => {
		const key = `${e.code} ${e.message}`;
		return seen.has(key) ? false : seen.add(key);
	});
	return { errors: unique, uses, warnings };
}

// ---------------------------------------------------------------- main

function readEntries(kind, files) {
	return files.map(file => {
		const entry = { file, kind, document: null, errors: [], warnings: [], uses: [] };
		try {
			entry.document = loadJson(file);
			if (!isObject(entry.document)) {
				entry.errors.push({ code: 'JsonInvalid', message: 'The file does not hold a JSON object.' });
				entry.document = null;
			}
		} catch (error) {
			entry.errors.push({ code: 'JsonInvalid', message: error.message });
		}
		return entry;
	});
}

function buildRegistry(options, processes, specs, udps) {
	const registry = new ProcessRegistry([], true);
	const valid = entries => entries.filter(e => e.document && typeof e.document.id === 'string').map(e => e.document);
	registry.addAll(valid(processes), 'backend');
	if (!options.portable) {
		registry.addAll(valid(specs), 'backend');
		registry.addAll(valid(specs), options.namespace);
	}
	// UDPs after the native specs: a UDP wins over a native process of the same id, as on a back-end.
	registry.addAll(valid(udps), 'user');
	registry.addAll(valid(udps), options.namespace);
	return registry;
}

function checkIds(entries, backendIds) {
	const seen = new Map();
	for (const entry of entries) {
		const id = entry.document && entry.document.id;
		if (typeof id !== 'string') {
			continue;
		}
		const stem = path.basename(entry.file, '.json');
		if (id !== stem) {
			entry.errors.push({
				code: 'ProcessIdMismatch',
				message: `The process id '${id}' differs from the file name '${stem}.json'.`,
			});
		}
		if (seen.has(id)) {
			entry.errors.push({
				code: 'ProcessIdDuplicate',
				message: `The process id '${id}' is also used by ${displayPath(seen.get(id))}.`,
			});
		} else {
			seen.set(id, entry.file);
		}
		if (entry.kind === 'udp' && backendIds.has(id)) {
			entry.warnings.push(`the UDP id '${id}' is also a predefined openEO process; clients prefer the UDP for namespace null`);
		}
	}
}

async function run(options) {
	const processFiles = options.processes.flatMap(dir => [...jsonFiles(dir), ...jsonFiles(path.join(dir, 'proposals'))]);
	if (processFiles.length === 0) {
		throw new UsageError(`--processes: no process specs (*.json) in ${options.processes.join(', ')}`);
	}
	const processes = readEntries('process', processFiles);
	const specs = readEntries('spec', jsonFiles(options.specs));
	const udps = readEntries('udp', jsonFiles(options.udps));
	const examples = readEntries('example', jsonFiles(options.examples));

	const checks = new SchemaChecks(options.subtypes);
	const registry = buildRegistry(options, processes, specs, udps);
	const backendIds = new Set(processes.filter(e => e.document).map(e => e.document.id));
	checkIds(processes, new Set());
	checkIds(specs, new Set());
	checkIds(udps, backendIds);

	const reported = [...(options.checkProcesses ? processes : []), ...specs, ...udps, ...examples];
	let failed = 0;
	for (const entry of reported) {
		if (entry.document) {
			const schemaErrors = checks.apiSchema(entry.kind, entry.document);
			entry.errors.push(...schemaErrors);
			entry.errors.push(...checks.dataTypes(entry.document, schemaErrors.map(e => e.path)));
			if (isObject(entry.document.process_graph)) {
				const graph = await validateGraph(entry.document, registry);
				entry.errors.push(...graph.errors);
				entry.warnings.push(...graph.warnings);
				entry.uses = graph.uses;
			}
		}
		const ok = entry.errors.length === 0;
		failed += ok ? 0 : 1;
		const line = {
			file: displayPath(entry.file),
			kind: entry.kind,
			id: entry.document && typeof entry.document.id === 'string' ? entry.document.id : null,
			ok,
			errors: entry.errors,
			warnings: entry.warnings,
			uses: entry.uses,
		};
		process.stdout.write(JSON.stringify(line) + '\n');
	}
	const counts = ['spec', 'udp', 'example', 'process']
		.map(kind => [kind, reported.filter(e => e.kind === kind).length])
		.filter(([, n]) => n > 0)
		.map(([kind, n]) => `${n} ${kind}`)
		.join(', ');
	process.stderr.write(
		`webeditor/validate: ${reported.length - failed} of ${reported.length} files pass (${counts || 'no files'}); ` +
		`registry: ${registry.count()} processes in ${registry.namespaces().join(', ')}` +
		`${options.portable ? ' (portable: no native specs)' : ''}\n`,
	);
	return failed === 0 ? 0 : 1;
}

process.on('unhandledRejection', error => {
	process.stderr.write(`webeditor/validate: internal error (unhandled rejection): ${error && error.stack ? error.stack : error}\n`);
	process.exit(2);
});

try {
	const options = parseCommandLine(process.argv.slice(2));
	if (options.help) {
		process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0] + '*/\n');
		process.exitCode = 0;
	} else {
		process.exitCode = await run(options);
	}
} catch (error) {
	if (error instanceof UsageError) {
		process.stderr.write(`webeditor/validate: ${error.message}\n`);
	} else {
		process.stderr.write(`webeditor/validate: internal error: ${error && error.stack ? error.stack : error}\n`);
	}
	process.exitCode = 2;
}
