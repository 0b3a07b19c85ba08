-- A database written by the release before migrations (commit a080209): storage/ of that commit, three runs
-- (a finished context distillation with a point, a sample and an adapter; a best-of-N; a queued search). sqlite3 .dump
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE runs (
	id VARCHAR(32) NOT NULL, 
	edge VARCHAR(40) NOT NULL, 
	method VARCHAR(40) NOT NULL, 
	scenario VARCHAR(200) NOT NULL, 
	model VARCHAR(300), 
	config JSON NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	progress FLOAT NOT NULL, 
	stage VARCHAR(200) NOT NULL, 
	metrics JSON NOT NULL, 
	error TEXT, 
	owner VARCHAR(80), 
	parent_id VARCHAR(32), 
	created_at DATETIME NOT NULL, 
	started_at DATETIME, 
	finished_at DATETIME, 
	PRIMARY KEY (id)
);
INSERT INTO runs VALUES('d0871d3c93b8','prompt->parameter','kl','sentiment','embedded:smollm2-135m','{"method_config": {"steps": 3}, "scenario_data": {"name": "sentiment", "prompt": "Be positive.", "train_inputs": ["a", "b"], "heldout_inputs": ["c"], "reward": "sentiment"}}','succeeded',1.0,'done','{"kl_before": 0.2, "kl_after": 0.05}',NULL,'1@old',NULL,'2026-12-01 14:53:11.378185','2026-12-01 14:53:11.380707','2026-12-01 14:53:11.395754');
INSERT INTO runs VALUES('f2a780004381','best-of-n','bon','sentiment',NULL,'{"method_config": {"n": "1,4"}, "scenario_data": {"name": "sentiment", "prompt": "Be positive.", "train_inputs": ["a", "b"], "heldout_inputs": ["c"], "reward": "sentiment"}}','succeeded',1.0,'done','{"results": []}',NULL,NULL,NULL,'2026-12-01 14:53:11.403046',NULL,'2026-12-01 14:53:11.404202');
INSERT INTO runs VALUES('7fadd3bb3d5a','reward->prompt','search','pirate',NULL,'{"method_config": {"rounds": 2}, "scenario_data": {"name": "pirate", "prompt": "Be positive.", "train_inputs": ["a", "b"], "heldout_inputs": ["c"], "reward": "sentiment"}}','queued',0.0,'','{}',NULL,NULL,NULL,'2026-12-01 14:53:11.407267',NULL,NULL);
CREATE TABLE metric_points (
	id INTEGER NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	name VARCHAR(60) NOT NULL, 
	step INTEGER NOT NULL, 
	value FLOAT NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
INSERT INTO metric_points VALUES(1,'d0871d3c93b8','loss',1,0.5);
CREATE TABLE samples (
	id INTEGER NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	policy VARCHAR(60) NOT NULL, 
	input TEXT NOT NULL, 
	output TEXT NOT NULL, 
	reward FLOAT, 
	sample_index INTEGER NOT NULL, 
	extra JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
INSERT INTO samples VALUES(1,'d0871d3c93b8','base','c','y',0.25,0,'{"derived": 1.5}');
CREATE TABLE artifacts (
	id INTEGER NOT NULL, 
	run_id VARCHAR(32) NOT NULL, 
	kind VARCHAR(30) NOT NULL, 
	vertex VARCHAR(20) NOT NULL, 
	path TEXT, 
	data JSON NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE
);
INSERT INTO artifacts VALUES(1,'d0871d3c93b8','adapter','parameter','/x/adapter','{"adapter_name": "cd"}','2026-12-01 14:53:11.393658');
CREATE INDEX ix_runs_model ON runs (model);
CREATE INDEX ix_runs_parent_id ON runs (parent_id);
CREATE INDEX ix_runs_status ON runs (status);
CREATE INDEX ix_metric_points_run_id ON metric_points (run_id);
CREATE INDEX ix_samples_run_id ON samples (run_id);
CREATE INDEX ix_artifacts_run_id ON artifacts (run_id);
COMMIT;
