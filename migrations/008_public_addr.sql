-- The address clients outside the cluster's network reach a datanode at (issue 14): a
-- datanode in a container is published on the host's loopback, while the other datanodes
-- and the coordinator keep using its in-network address. '' when the node has none.
ALTER TABLE nodes ADD COLUMN public_addr TEXT NOT NULL DEFAULT '';
