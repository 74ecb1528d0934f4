"""The catalog on Milvus (pymilvus; tested offline on milvus-lite): the connection, the layout of its
collections, the store interface, generations and searching in place."""
